"""`puf enroll --thumbnails PX`: a small grey thumbnail of each enrolled label, one file
per shard, listed and signed in the manifest; incremental and idempotent like the rest
of enrollment, read lazily on the device by `edge_app.thumbnails.Thumbnails`."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.cli import main
from edge_app.errors import PufError
from edge_app.thumbnails import Thumbnails, make_thumbnail
from tests.bundle_support import enroll_crops, keys, sim_batch, write_crop_folder
from trainer.enroll import EnrollOptions, enroll, items_from_folder

PX = 48


@pytest.fixture(scope="module")
def field1(base) -> Path:
    """Microscope captures of field 1: labels of the same patterns as field 0's."""
    out = base / "thumbnail_field1"
    return out if (out / "labels.csv").exists() else write_crop_folder(out, sim_batch(), (1,))


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def expected(crops: Path) -> dict[str, np.ndarray]:
    """Each label's thumbnail, made from its crop as enrolled."""
    items, _ = items_from_folder(crops)
    return {item.label_id: make_thumbnail(cv2.imread(str(item.crop)), PX) for item in items}


def test_thumbnails_are_stored_per_shard_signed_and_read_back(base, fresh, key, field1):
    report = enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=PX), progress=False)
    assert report.thumbnails_px == PX
    before = manifest(fresh)
    enroll(fresh, field1, key, progress=False)  # later batches get thumbnails too, appended to the shards
    after = manifest(fresh)
    bundle = load_bundle(fresh, keys(base)[1])  # every thumbnail file checked against the signed manifest
    section = after["shards"]
    assert section["thumbnails"] == {"px": PX, "channel": "green"}
    appended = [p for p, e in before["shards"]["classes"].items() if section["classes"][p]["labels"] > e["labels"]]
    assert appended  # field 1 shares patterns with field 0
    for entry in section["classes"].values():
        stored = np.load(fresh / entry["thumbnails"])
        assert stored.dtype == np.uint8 and stored.shape == (entry["labels"], PX, PX)
        assert entry["thumbnails"] in after["files"]
        assert after["files"][entry["thumbnails"]]["bytes"] == stored.nbytes + 128  # PX * PX a label + npy header
    thumbnails = Thumbnails.open(bundle.path)
    assert len(thumbnails) == section["labels"] == 24
    truth = expected(enroll_crops(base)) | expected(field1)
    for label_id, thumbnail in truth.items():
        pattern = next(p for p, shard in bundle.shards.shards.items() if label_id in set(shard.label_ids()))
        assert np.array_equal(thumbnails.get(label_id), thumbnail), label_id
        assert np.array_equal(thumbnails.get(label_id, pattern=pattern), thumbnail)
    assert thumbnails.get("V1-0009-00") is None
    assert thumbnails.get("V1-0000-00") is not None and thumbnails.get("Ä") is None


def test_enrolling_again_adds_nothing_and_rewrites_no_thumbnail(base, fresh, key):
    enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=PX), progress=False)
    before = manifest(fresh)
    report = enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=PX), progress=False)
    assert report.labels_added == 0
    assert manifest(fresh)["files"] == before["files"]


def test_turned_copies_share_one_thumbnail(base, fresh, key):
    enroll(fresh, enroll_crops(base), key, EnrollOptions(rotations=4, thumbnails=PX), progress=False)
    section = manifest(fresh)["shards"]
    assert section["vectors"] == 48 and section["labels"] == 12
    thumbnails = Thumbnails.open(fresh)
    for label_id, thumbnail in expected(enroll_crops(base)).items():
        assert np.array_equal(thumbnails.get(label_id), thumbnail)


def test_a_changed_thumbnail_makes_the_bundle_refused(base, fresh, key):
    enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=PX), progress=False)
    name = next(iter(manifest(fresh)["shards"]["classes"].values()))["thumbnails"]
    data = bytearray((fresh / name).read_bytes())
    data[-1] ^= 0xFF
    (fresh / name).write_bytes(bytes(data))
    with pytest.raises(PufError, match=f"bundle file {name} does not match its checksum"):
        load_bundle(fresh, keys(base)[1])


def test_a_bundle_without_thumbnails_has_none(base, fresh, key):
    enroll(fresh, enroll_crops(base), key, progress=False)
    assert Thumbnails.open(fresh) is None
    assert not any(name.endswith(".thumbs.npy") for name in manifest(fresh)["files"])
    with pytest.raises(PufError, match="12 labels were enrolled without thumbnails"):
        enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=PX), progress=False)


def test_thumbnail_sizes_are_checked(base, fresh, key):
    with pytest.raises(PufError, match="--thumbnails must be 16-256 px"):
        EnrollOptions(thumbnails=8)
    enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=PX), progress=False)
    with pytest.raises(PufError, match=f"the bundle's thumbnails are {PX} px"):
        enroll(fresh, enroll_crops(base), key, EnrollOptions(thumbnails=64), progress=False)


def test_puf_enroll_thumbnails_from_the_command_line(base, fresh, capsys):
    assert main(["enroll", "--bundle", str(fresh), "--labels", str(enroll_crops(base)), "--key",
                 str(keys(base)[0]), "--thumbnails", "32"]) == 0
    assert "thumbnails 32 px" in capsys.readouterr().out
    assert Thumbnails.open(fresh).get("V1-0000-05").shape == (32, 32)
