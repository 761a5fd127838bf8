"""The bundle format's one owner: the committed bundles read, write and verify through it
unchanged, and a manifest field of the wrong kind is a message naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.bundle_format import MANIFEST, Manifest, read_manifest, verify_files
from edge_app.errors import PufError
from edge_app.signing import canonical_bytes

ROOT = Path(__file__).resolve().parents[2]
ARM64 = ROOT / "tests" / "data" / "arm64"
COMMITTED = [ROOT / "models" / "default", ARM64 / "bundle"]


@pytest.mark.parametrize("bundle", COMMITTED, ids=lambda p: p.parent.name + "/" + p.name)
def test_the_committed_bundles_read_and_write_back_to_the_same_signed_bytes(bundle, tmp_path):
    written = json.loads((bundle / MANIFEST).read_text())
    manifest = Manifest.read(bundle)
    assert manifest.to_dict() == written
    manifest.write(tmp_path)
    assert canonical_bytes(read_manifest(tmp_path)) == canonical_bytes(written)
    verify_files(bundle, manifest)


def test_the_committed_signed_bundle_still_verifies_after_a_write_through_the_format(tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(ARM64 / "bundle", copy)
    Manifest.read(copy).write(copy)
    loaded = load_bundle(copy, ARM64 / "trusted_keys")
    assert loaded.signer == loaded.manifest.signer and loaded.threshold == loaded.manifest.threshold
    assert loaded.release.sequence == 1 and loaded.shards.patterns


def test_non_ascii_pattern_names_are_written_as_utf8_and_sign_the_same(tmp_path):
    manifest = Manifest.read(ARM64 / "bundle")
    manifest.pattern_classes = ["福", *(manifest.pattern_classes or [])]
    before = canonical_bytes(manifest.to_dict())
    manifest.write(tmp_path)
    assert "福" in (tmp_path / MANIFEST).read_text(encoding="utf-8")
    assert canonical_bytes(read_manifest(tmp_path)) == before


@pytest.mark.parametrize(("path", "value", "message"), [
    (("files", "model_int8.tflite", "bytes"), "many", '"files" "bytes" must be a whole number of bytes'),
    (("model", "version"), 3, '"model" "version" must be text'),
    (("decision", "threshold"), "0.5", '"decision" "threshold" must be a number'),
    (("decision", "calibrated"), "yes", '"decision" "calibrated" must be true or false'),
    (("shards", "format"), 3, "shards are of format 3; this device reads formats 1, 2"),
    (("shards", "labels"), -1, '"shards" "labels" must be a whole number'),
    (("shards", "enrollments"), {}, '"shards" "enrollments" must be a list'),
    (("sequence",), "7", "sequence must be a whole number >= 0"),
    (("created",), "yesterday", "created must be an ISO 8601 time"),
    (("embedding_dim",), 0, '"embedding_dim" must be a positive whole number'),
])
def test_a_field_of_the_wrong_kind_is_refused_naming_it(path, value, message):
    data = json.loads((ARM64 / "bundle" / MANIFEST).read_text())
    holder = data
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    with pytest.raises(PufError, match=message.replace("(", r"\(")):
        Manifest.from_dict(data)


def test_a_shard_entry_naming_thumbnails_of_the_wrong_kind_or_an_unsigned_file_is_refused():
    data = json.loads((ARM64 / "bundle" / MANIFEST).read_text())
    pattern = next(iter(data["shards"]["classes"]))
    data["shards"]["classes"][pattern]["thumbnails"] = 5
    with pytest.raises(PufError, match="names the thumbnails file 5"):
        Manifest.from_dict(data)
    data["shards"]["classes"][pattern]["thumbnails"] = "../../etc/passwd"
    with pytest.raises(PufError, match="not one of the bundle's signed files"):
        Manifest.from_dict(data).check_named_files()



def test_a_manifest_write_cut_short_leaves_the_old_manifest_whole(tmp_path, monkeypatch):
    """A write is made beside the manifest and renamed over it: cut off before the rename (a
    kill, a full disk), the old manifest is still there, whole, and no half-written file is."""
    import os

    from edge_app import folder_swap

    folder = tmp_path / "bundle"
    shutil.copytree(ROOT / "models" / "default", folder)
    before = (folder / MANIFEST).read_bytes()
    manifest = Manifest.read(folder)
    manifest.decision.threshold = 0.5

    def cut(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_swap.os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        manifest.write(folder)
    assert (folder / MANIFEST).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (ROOT / "models" / "default").iterdir())
    monkeypatch.undo()
    manifest.write(folder)
    assert Manifest.read(folder).decision.threshold == 0.5
    assert os.stat(folder / MANIFEST).st_mode & 0o044  # readable by others, as the files beside it
