import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from edge_app.cli import main as puf
from tests.batch_support import design_and_etch
from tests.photo_support import disk_full_after_one_tiff


@pytest.fixture()
def etched_batch(tmp_path):
    return design_and_etch(tmp_path / "B3", "2x1")


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
    disk_full_after_one_tiff(monkeypatch)
    assert puf(["photograph", str(etched_batch), "--sim", "--workers", "1"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in (etched_batch / "fields").glob("*.tif")) == ["field_0000.tif"]


def test_without_an_etched_film_it_says_what_to_run(tmp_path, capsys):
    assert puf(["design", str(tmp_path / "B4"), "--fields", "1x1"]) == 0
    assert puf(["photograph", str(tmp_path / "B4"), "--sim"]) == 2
    assert "puf etch" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("how", ["kill -9 of puf", "Ctrl-C", "SIGTERM to puf"])
def test_the_workers_end_with_the_run_and_the_batch_resumes(tmp_path, how):
    batch_dir = design_and_etch(tmp_path / "B5", "4x3")
    fields = batch_dir / "fields"
    command = [sys.executable, "-m", "edge_app.cli", "photograph", str(batch_dir), "--sim", "--workers", "2"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # not a pipe: a surviving worker would hold it open
        run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                               start_new_session=True)  # its own group, as a terminal's Ctrl-C reaches
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not list(fields.glob("field_*[0-9].tif")) and run.poll() is None and time.monotonic() < deadline:
            workers |= _children(run.pid)
            time.sleep(0.02)
        workers |= _children(run.pid)
        assert run.poll() is None, "the run ended before it could be stopped: give it more fields"
        assert len(workers) >= 2
        if how == "kill -9 of puf":
            run.kill()
        elif how == "Ctrl-C":
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.terminate()
        run.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)], f"workers outlived the run ({how})"
        if how != "kill -9 of puf":
            err = log.read_text()
            assert run.returncode == 130 and "run it again to resume" in err and "Traceback" not in err
        kept = sorted(p.name for p in fields.glob("field_*[0-9].tif"))
        assert 1 <= len(kept) < 12
        assert puf(["photograph", str(batch_dir), "--sim", "--workers", "2"]) == 0
        manifest = json.loads((fields / "manifest.json").read_text())
        assert [entry["field"] for entry in manifest["fields"]] == list(range(12))
        assert not list(fields.glob("*.tmp.tif"))
    finally:
        for pid in workers | {run.pid}:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        run.wait()
