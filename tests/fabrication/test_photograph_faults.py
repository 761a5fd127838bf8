"""`puf photograph --sim` under faults: a disk that fills while it writes the batch's
manifest, and kill -9 (of puf and its workers) at seeded random moments. The re-run must
leave what an uninterrupted run leaves: every field once, with the same manifest entry and
the same pixels, and no half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tifffile

from edge_app.cli import main as puf
from tests.batch_support import design_and_etch
from tests.faults import ROOT, kill_moments, limited, puf_command, run_and_kill, timed_run

KILLS = 20


@pytest.fixture(scope="module")
def etched(tmp_path_factory) -> Path:
    """A simulated batch of 3 fields (both workers get some), etched and not yet photographed."""
    return design_and_etch(tmp_path_factory.mktemp("factory") / "B8", "3x1")


def photograph_state(batch: Path) -> dict:
    """What `puf photograph` leaves: the manifest's entries, each field's pixels, and every
    file in the fields folder (a half-written one shows up here)."""
    fields = batch / "fields"
    manifest = json.loads((fields / "manifest.json").read_text())
    pixels = {p.name: hashlib.sha256(tifffile.imread(p).tobytes()).hexdigest()
              for p in sorted(fields.glob("field_*.tif"))}
    return {"manifest": manifest, "pixels": pixels, "files": sorted(p.name for p in fields.iterdir())}


def test_photograph_killed_at_random_moments_converges_on_an_uninterrupted_run(etched, tmp_path):
    reference_batch = Path(shutil.copytree(etched, tmp_path / "reference" / "B8"))
    command = puf_command("photograph", str(reference_batch), "--sim", "--workers", "2")
    longest = timed_run(command, tmp_path / "reference.log")
    reference = photograph_state(reference_batch)
    assert [entry["field"] for entry in reference["manifest"]["fields"]] == [0, 1, 2]

    batch = Path(shutil.copytree(etched, tmp_path / "killed" / "B8"))
    command = puf_command("photograph", str(batch), "--sim", "--workers", "2")
    log = tmp_path / "killed.log"
    killed = finished = 0
    for moment in kill_moments(12, KILLS, longest):
        code = run_and_kill(command, moment, log)
        if code is None:
            killed += 1
            continue
        assert code == 0, log.read_text()[-2000:]
        finished += 1  # it ended first: check it, then start the batch over for the kills left
        assert photograph_state(batch) == reference
        shutil.rmtree(batch / "fields")
    timed_run(command, log)
    assert photograph_state(batch) == reference
    assert killed >= KILLS // 2, (killed, finished)


def test_a_full_disk_while_writing_the_manifest_is_a_clear_error(etched, tmp_path):
    batch = Path(shutil.copytree(etched, tmp_path / "B8"))
    assert puf(["photograph", str(batch), "--sim", "--workers", "1"]) == 0
    reference = photograph_state(batch)
    (batch / "fields" / "manifest.json").unlink()  # every field shot; the manifest still to write

    # the manifest (about 1 KB) cannot be written past 100 bytes
    done = subprocess.run(limited(puf_command("photograph", str(batch), "--sim", "--workers", "1"), "RLIMIT_FSIZE",
                                  100), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"cannot write {batch / 'fields' / 'manifest.json'}" in done.stderr
    assert "free space" in done.stderr and "run the same command again" in done.stderr
    assert sorted(os.listdir(batch / "fields")) == [name for name in reference["files"] if name != "manifest.json"]
    assert puf(["photograph", str(batch), "--sim", "--workers", "1"]) == 0
    assert photograph_state(batch) == reference
