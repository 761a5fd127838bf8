"""A signature vouches for who wrote a manifest, not that its values make sense (issue 22,
item 2): every signed value is range-checked, and the sizes checked against the model
itself, when a device installs or opens a bundle and before any key signs one. Each bad
value below is validly signed by the trusted key, and still refused with a PufError naming
it; the device keeps its bundle."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.cli import main
from edge_app.device_store import DeviceStore
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, enrolled_bundle, keys, model_bundle
from trainer.export_record import record_export
from trainer.harness.designed_model import EMBEDDING_DIM, INPUT
from trainer.keys import load_private_key, sign_manifest


@pytest.fixture(autouse=True)
def no_default_trusted_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("PUF_TRUSTED_KEYS", str(tmp_path / "no_trusted_keys"))


@pytest.fixture(scope="module")
def signed(base, tmp_path_factory) -> Path:
    """A signed bundle with field 0 enrolled (do not modify: copy it)."""
    return enrolled_bundle(base, tmp_path_factory.mktemp("signed_values") / "bundle")


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def set_field(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


def threshold_nan(bundle: Path) -> None:
    """NaN cannot be signed (canonical JSON refuses it): a NaN beside a signature made before."""
    text = (bundle / "manifest.json").read_text()
    data = manifest(bundle)
    (bundle / "manifest.json").write_text(text.replace(json.dumps(data["decision"]["threshold"]), "NaN", 1))


BAD = [("decision.threshold", -5, '"threshold" must be a number between 0 and 1'),
       ("decision.threshold", 2.0, '"threshold" must be a number between 0 and 1'),
       ("decision.threshold", 0, '"threshold" must be a number between 0 and 1'),
       ("decision.far", 2.0, '"far" must be a number or null'),
       ("embedding_dim", 7, '"shards" must be of the manifest\'s embedding_dim 7'),
       ("embedding_dim", 100000, '"embedding_dim" must be a positive whole number, at most 4096'),
       ("input", {"shape": [100000, 100000, 1]}, f'"input" must be {{"shape": [{INPUT}, {INPUT}, 1]}}'),
       ("sequence", 2**60, "sequence must be a whole number >= 0 and <= "),
       ("shards.memory_budget_mb", -1, '"memory_budget_mb" must be a number above 0'),
       ("pattern_classes", [], '"pattern_classes" must be a list of distinct pattern names')]


def resign(bundle: Path, base: Path, change) -> None:
    data = manifest(bundle)
    change(data)
    (bundle / "manifest.json").write_text(json.dumps(sign_manifest(data, load_private_key(keys(base)[0]))))


@pytest.mark.parametrize("field, value, message", BAD)
def test_a_signed_value_out_of_range_is_refused_by_the_device_and_by_verify(base, signed, tmp_path, capsys, field,
                                                                             value, message):
    device = DeviceStore(tmp_path / "device")
    device.install_bundle(signed, keys(base)[1])
    bundle = Path(shutil.copytree(signed, tmp_path / "usb" / "bundle"))
    def change(data: dict) -> None:
        data["sequence"] = data.get("sequence", 0) + 1  # newer than the installed one: only the value is wrong
        set_field(data, field, value)

    resign(bundle, base, change)
    with pytest.raises(PufError, match=message.replace("[", r"\[").replace("(", r"\(")):
        device.install_bundle(bundle, keys(base)[1])
    assert manifest(device.bundle_path()) == manifest(signed)  # the device keeps its bundle
    assert main(["verify", str(tmp_path / "photo.png"), "--bundle", str(bundle), "--trusted-keys",
                 str(keys(base)[1])]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_nested_nan_threshold_is_refused(base, signed, tmp_path):
    bundle = Path(shutil.copytree(signed, tmp_path / "bundle"))
    threshold_nan(bundle)
    with pytest.raises(PufError, match="is not a bundle manifest: Out of range float values"):
        DeviceStore(tmp_path / "device").install_bundle(bundle, keys(base)[1])


def test_an_embedding_size_or_input_size_the_model_does_not_have_is_refused(base, signed, tmp_path):
    """Consistent in the manifest (shards and manifest both say 7), but not the model's."""
    from faiss import IndexFlatIP, write_index

    from edge_app.bundle_format import FileEntry

    bundle = Path(shutil.copytree(signed, tmp_path / "bundle"))
    data = manifest(bundle)
    for entry in data["shards"]["classes"].values():  # shards of 7-d vectors, as the manifest says
        index = IndexFlatIP(7)
        index.add(np.zeros((entry["vectors"], 7), np.float32))
        write_index(index, str(bundle / entry["index"]))
        data["files"][entry["index"]] = FileEntry.of(bundle / entry["index"]).to_dict()
    data["embedding_dim"] = data["shards"]["embedding_dim"] = 7
    (bundle / "manifest.json").write_text(json.dumps(sign_manifest(data, load_private_key(keys(base)[0]))))
    with pytest.raises(PufError, match=f"outputs {EMBEDDING_DIM} embedding size; the manifest says 7"):
        DeviceStore(tmp_path / "device").install_bundle(bundle, keys(base)[1])
    other = Path(shutil.copytree(signed, tmp_path / "other"))
    resign(other, base, lambda d: d["preprocessing"].update(input_size=96))
    with pytest.raises(PufError, match=rf"takes \({INPUT}, {INPUT}, 1\) inputs; the preprocessing gives \(96, 96, 1\)"):
        DeviceStore(tmp_path / "device2").install_bundle(other, keys(base)[1])


@pytest.mark.parametrize("field, value, message", [
    ("decision.threshold", 2.0, '"threshold" must be a number between 0 and 1'),
    ("embedding_dim", 7, f"outputs {EMBEDDING_DIM} embedding size; the manifest says 7"),
    ("preprocessing.input_size", 96, rf"takes \({INPUT}, {INPUT}, 1\) inputs"),
])
def test_no_key_signs_a_value_out_of_range_even_in_a_real_export(base, tmp_path, field, value, message):
    """An export recorded as this account's (a bug in the trainer, say) is still checked."""
    from trainer.enroll import enroll

    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "site" / "bundle"))
    data = manifest(bundle)
    set_field(data, field, value)
    (bundle / "manifest.json").write_text(json.dumps(data))
    record_export(data, bundle)
    before = {p: p.read_bytes() for p in (tmp_path / "site").rglob("*") if p.is_file() and p.suffix != ".lock"}
    with pytest.raises(PufError, match=message):
        enroll(bundle, enroll_crops(base), load_private_key(keys(base)[0]), progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "site").rglob("*") if p.is_file() and p.suffix != ".lock"} == before


@pytest.mark.parametrize("junk", [b"PK\x03\x04" + b"\x00" * 40, b""])
def test_signed_junk_pattern_templates_are_a_clear_refusal(base, signed, tmp_path, capsys, junk):
    from edge_app.bundle_format import TEMPLATES, FileEntry

    bundle = Path(shutil.copytree(signed, tmp_path / "bundle"))
    (bundle / TEMPLATES).write_bytes(junk)
    resign(bundle, base, lambda d: d["files"].update({TEMPLATES: FileEntry.of(bundle / TEMPLATES).to_dict()}))
    with pytest.raises(PufError, match="cannot read the pattern templates"):
        DeviceStore(tmp_path / "device").install_bundle(bundle, keys(base)[1])
    with pytest.raises(PufError, match="cannot read the pattern templates"):
        load_bundle(bundle, keys(base)[1])
    assert main(["verify", str(tmp_path / "photo.png"), "--bundle", str(bundle), "--trusted-keys",
                 str(keys(base)[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot read the pattern templates" in err and "Traceback" not in err
