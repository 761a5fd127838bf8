import errno
import json

import cv2
import numpy as np
import pytest
import tifffile

from edge_app.cli import main as puf
from edge_app.layout import BatchLayout
from fabrication.sim.film import EtchedFilm
from fabrication.sim.laser import engrave_layout


@pytest.fixture()
def etched_batch(tmp_path):
    batch_dir = tmp_path / "B3"
    assert puf(["design", str(batch_dir), "--fields", "2x1"]) == 0
    film = EtchedFilm(5)
    engrave_layout(film, BatchLayout.load(batch_dir / "layout.json"), 128.0)
    (batch_dir / "sim").mkdir()
    film.save(batch_dir / "sim" / "film.npz")
    return batch_dir


def test_photographs_every_field_with_metadata_and_truth(etched_batch):
    assert puf(["photograph", str(etched_batch), "--sim", "--workers", "1"]) == 0
    manifest = json.loads((etched_batch / "fields" / "manifest.json").read_text())
    assert [entry["field"] for entry in manifest["fields"]] == [0, 1]
    for entry in manifest["fields"]:
        path = etched_batch / "fields" / entry["file"]
        with tifffile.TiffFile(path) as tif:
            meta = json.loads(tif.pages[0].description)
            assert tif.pages[0].shape == (1440, 1920, 3)
        assert meta["batch_id"] == "B3" and meta["field"] == entry["field"]
        assert meta["pixel_size_um"] == 0.6 and len(meta["stage_um"]) == 2
        truth = json.loads(path.with_suffix(".truth.json").read_text())
        whole = {label["label_id"] for label in truth["labels"] if label["whole"]}
        assert {f"B3-{entry['field']:04d}-{slot:02d}" for slot in range(12)} <= whole


def test_an_interrupted_run_resumes_without_reshooting(etched_batch, capsys):
    assert puf(["photograph", str(etched_batch), "--sim", "--workers", "1"]) == 0
    first = cv2.imread(str(etched_batch / "fields" / "field_0001.tif"))
    kept = (etched_batch / "fields" / "field_0000.tif").stat().st_mtime_ns
    (etched_batch / "fields" / "field_0001.tif").unlink()
    capsys.readouterr()
    assert puf(["photograph", str(etched_batch), "--sim", "--workers", "1"]) == 0
    assert "1 fields photographed, 1 already there" in capsys.readouterr().out
    assert (etched_batch / "fields" / "field_0000.tif").stat().st_mtime_ns == kept
    np.testing.assert_array_equal(cv2.imread(str(etched_batch / "fields" / "field_0001.tif")), first)


def test_a_full_disk_keeps_what_was_written(etched_batch, monkeypatch, capsys):
    real_imwrite = tifffile.imwrite
    calls = []

    def fill_up(path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_imwrite(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", fill_up)
    assert puf(["photograph", str(etched_batch), "--sim", "--workers", "1"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in (etched_batch / "fields").glob("*.tif")) == ["field_0000.tif"]


def test_without_an_etched_film_it_says_what_to_run(tmp_path, capsys):
    assert puf(["design", str(tmp_path / "B4"), "--fields", "1x1"]) == 0
    assert puf(["photograph", str(tmp_path / "B4"), "--sim"]) == 2
    assert "puf etch" in capsys.readouterr().err
