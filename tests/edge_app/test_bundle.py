"""A device opens only the bundle that was signed: checksums, signature, trusted keys."""

import json
import re
import shutil
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.errors import PufError
from edge_app.signing import canonical_bytes, load_trusted_keys
from tests.bundle_support import enrolled_bundle, keys, model_bundle


@pytest.fixture
def bundle(base, tmp_path) -> Path:
    base.mkdir(exist_ok=True)
    return enrolled_bundle(base, tmp_path / "bundle")


@pytest.fixture
def trusted(base) -> Path:
    return keys(base)[1]


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_signed_intact_bundle_loads(bundle, trusted):
    loaded = load_bundle(bundle, trusted)
    assert loaded.signer == manifest(bundle)["signature"]["key_id"]
    assert len(loaded.shards) == 12
    assert loaded.templates is not None


def test_one_changed_byte_in_a_shard_is_refused_naming_it(bundle, trusted):
    shard = manifest(bundle)["shards"]["classes"]
    name = next(iter(shard.values()))["index"]
    flip_byte(bundle / name, (bundle / name).stat().st_size // 2)
    with pytest.raises(PufError, match=f"{name} does not match its checksum"):
        load_bundle(bundle, trusted)


def test_one_changed_byte_in_the_model_is_refused(bundle, trusted):
    flip_byte(bundle / "model_int8.tflite", 4000)
    with pytest.raises(PufError, match="model_int8.tflite does not match its checksum"):
        load_bundle(bundle, trusted)


def test_an_edited_manifest_breaks_the_signature(bundle, trusted):
    data = manifest(bundle)
    data["decision"]["threshold"] = 0.1  # let anything through
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(PufError, match="manifest.json: the signature does not match"):
        load_bundle(bundle, trusted)


def test_a_missing_shard_is_refused_naming_it(bundle, trusted):
    name = next(iter(manifest(bundle)["shards"]["classes"].values()))["ids"]
    (bundle / name).unlink()
    with pytest.raises(PufError, match=f"{name} is missing"):
        load_bundle(bundle, trusted)


def test_a_half_copied_shard_is_refused(bundle, trusted):
    name = next(iter(manifest(bundle)["shards"]["classes"].values()))["index"]
    data = (bundle / name).read_bytes()
    (bundle / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(PufError, match=f"{name} does not match its checksum"):
        load_bundle(bundle, trusted)


def test_an_unlisted_file_is_refused_naming_it(bundle, trusted):
    shutil.copy(next((bundle / "shards").glob("*.faiss")), bundle / "shards" / "p99.faiss")
    with pytest.raises(PufError, match="shards/p99.faiss is not listed"):
        load_bundle(bundle, trusted)


def test_a_bundle_signed_by_an_untrusted_key_is_refused(bundle, trusted, tmp_path):
    from trainer.keys import generate_keypair, load_private_key, sign_manifest

    private, _, rogue = generate_keypair(tmp_path / "rogue")
    forged = sign_manifest(manifest(bundle), load_private_key(private))
    (bundle / "manifest.json").write_text(json.dumps(forged))
    with pytest.raises(PufError, match=f"signed by key {rogue}, which this device does not trust"):
        load_bundle(bundle, trusted)
    # trusted once its key is added
    shutil.copy(tmp_path / "rogue.pub", tmp_path / "trusted_too.pub")
    both = {**load_trusted_keys(trusted), **load_trusted_keys(tmp_path)}
    assert load_bundle(bundle, both).signer == rogue


def test_an_unsigned_bundle_is_refused(base, trusted):
    with pytest.raises(PufError, match="not signed"):
        load_bundle(model_bundle(base), trusted)


def test_no_trusted_keys_is_a_clear_error(bundle, tmp_path):
    with pytest.raises(PufError, match="no trusted keys"):
        load_bundle(bundle, tmp_path / "nowhere")


def test_canonical_bytes_ignore_key_order_and_the_signature():
    a = {"b": [1, 2.5, "é"], "a": {"y": None, "x": 1e-5}, "signature": {"value": "x"}}
    b = {"a": {"x": 1e-5, "y": None}, "b": [1, 2.5, "é"]}
    assert canonical_bytes(a) == canonical_bytes(b)
    assert canonical_bytes(json.loads(json.dumps(a, indent=3))) == canonical_bytes(a)


def resigned(bundle: Path, base: Path, data: dict) -> None:
    """Write `data` as the bundle's manifest, validly signed by the trusted factory key."""
    from trainer.keys import load_private_key, sign_manifest

    (bundle / "manifest.json").write_text(json.dumps(sign_manifest(data, load_private_key(keys(base)[0]))))


@pytest.mark.parametrize("text, message", [
    ("[]", "is not a bundle manifest (a JSON object), it holds a list"),
    ("3", "is not a bundle manifest"),
    ('{"format_version": 1, "model": ' + "[" * 100_000 + "]" * 100_000 + "}", "cannot read"),
])
def test_a_manifest_that_is_no_object_or_nested_too_deep_is_refused(bundle, trusted, text, message):
    (bundle / "manifest.json").write_text(text)
    with pytest.raises(PufError, match=re.escape(message)):
        load_bundle(bundle, trusted)


def test_a_key_id_that_is_a_list_is_refused(bundle, trusted):
    data = manifest(bundle)
    data["signature"]["key_id"] = ["a", "b"]
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(PufError, match="which this device does not trust"):
        load_bundle(bundle, trusted)


@pytest.mark.parametrize("field, value, message", [
    ("threshold", "abc", '"decision" "threshold" must be a number'),
    ("threshold", None, '"decision" "threshold" must be a number'),
    ("threshold", True, '"decision" "threshold" must be a number'),
    ("far", "low", '"decision" "far" must be a number or null'),
])
def test_a_signed_manifest_with_a_threshold_of_the_wrong_type_is_refused(bundle, trusted, base, field, value,
                                                                         message):
    data = manifest(bundle)
    data["decision"][field] = value
    resigned(bundle, base, data)
    with pytest.raises(PufError, match=re.escape(message)):
        load_bundle(bundle, trusted)


@pytest.mark.parametrize("where", ["../outside.npy", "OUTSIDE", "shards/../../outside.npy", "shards/p99.thumbs.npy"])
@pytest.mark.parametrize("field", ["thumbnails", "ids", "index"])
def test_a_signed_manifest_naming_a_file_outside_its_signed_list_is_refused(bundle, trusted, base, where, field):
    """A shard entry's thumbnails (or index, id map) path that is not one of the signed
    files (outside the bundle, absolute, or unlisted) is refused before anything reads it."""
    import numpy as np

    from edge_app.thumbnails import Thumbnails

    outside = bundle.parent / "outside.npy"
    data = manifest(bundle)
    pattern, entry = next(iter(data["shards"]["classes"].items()))
    np.save(outside, np.zeros((entry["labels"], 8, 8), np.uint8))
    if where == "OUTSIDE":
        where = str(outside.resolve())
    data["shards"]["thumbnails"] = {"px": 8, "channel": "green"}
    entry[field] = where
    resigned(bundle, base, data)
    message = rf"shard '{re.escape(pattern)}' names the {field} file .*, which is not one of the bundle's signed files"
    with pytest.raises(PufError, match=message):
        load_bundle(bundle, trusted)
    with pytest.raises(PufError, match=message):
        Thumbnails.open(bundle)


def test_a_listed_file_outside_the_bundle_is_refused_even_when_signed(bundle, trusted, base):
    data = manifest(bundle)
    entry = next(iter(data["shards"]["classes"].values()))
    data["files"]["../outside.npy"] = data["files"][entry["ids"]]
    entry["thumbnails"] = "../outside.npy"
    data["shards"]["thumbnails"] = {"px": 8, "channel": "green"}
    resigned(bundle, base, data)
    with pytest.raises(PufError, match=r"lists '\.\./outside\.npy', which is outside the bundle"):
        load_bundle(bundle, trusted)
