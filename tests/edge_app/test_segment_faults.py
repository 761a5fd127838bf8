"""`puf segment` under faults, on a batch made by the real factory verbs (`puf design`,
`puf etch --sim`, `puf photograph --sim`): a disk that fills while it writes crops or the
registry, and kill -9 at seeded random moments. Each time the re-run must converge on what
an uninterrupted run of the same batch leaves: the same labels with the same statuses in a
sound registry, and the same crop files."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edge_app.cli import main as puf
from tests.batch_support import design_and_etch
from tests.faults import ROOT, kill_moments, limited, puf_command, run_and_kill, timed_run


@pytest.fixture(scope="module")
def photographed(tmp_path_factory) -> Path:
    """A simulated batch of 12 fields, photographed."""
    batch = design_and_etch(tmp_path_factory.mktemp("factory") / "B7", "4x3")
    assert puf(["photograph", str(batch), "--sim", "--workers", "2"]) == 0
    return batch


def fresh_copy(batch: Path, to: Path) -> Path:
    """The photographed batch, its field images shared (hard links): segment only reads them."""
    return Path(shutil.copytree(batch, to, copy_function=os.link))


def segment_state(batch: Path, registry: Path) -> dict:
    """What `puf segment` leaves: the registry's verdict on its own soundness, every field's and
    label's status (and crop digest), and the crop files' bytes. Read as the next run opens it:
    writable, for after a kill SQLite recovers the write-ahead log on opening (which a read-only
    connection cannot: "attempt to write a readonly database")."""
    db = sqlite3.connect(registry)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        fields = dict(db.execute("SELECT field, status FROM fields ORDER BY field")) if tables else {}
        labels = {row[0]: row[1:] for row in db.execute(
            "SELECT label_id, status, reason, crop_path, sha256 FROM labels ORDER BY label_id")} if tables else {}
    finally:
        db.close()
    crops = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((batch / "crops").iterdir())} if (batch / "crops").exists() else {}
    return {"integrity": integrity, "fields": fields, "labels": labels, "crops": crops}


# crops larger than SQLite's shared-memory file (32 KiB), so that a file size limit can let the
# registry open and still stop a crop
BIG_CROPS = ("--crop-size", "384")


def _segment_on_a_small_disk(batch: Path, registry: Path, limit: int) -> subprocess.CompletedProcess:
    """`puf segment` in a process that cannot write a file past `limit` bytes: its writes fail
    with EFBIG (SQLite's with "database or disk is full" or an I/O error), as on a full disk."""
    return subprocess.run(limited(puf_command("segment", str(batch), "--registry", str(registry), *BIG_CROPS),
                                  "RLIMIT_FSIZE", limit), cwd=ROOT, capture_output=True, text=True)


def test_a_full_disk_during_segment_is_a_clear_error_and_a_rerun_resumes(photographed, tmp_path):
    reference_batch = fresh_copy(photographed, tmp_path / "reference" / "B7")
    assert puf(["segment", str(reference_batch), "--registry", str(tmp_path / "reference" / "r.sqlite"),
                *BIG_CROPS]) == 0
    reference = segment_state(reference_batch, tmp_path / "reference" / "r.sqlite")

    batch, registry = fresh_copy(photographed, tmp_path / "full" / "B7"), tmp_path / "full" / "r.sqlite"
    faults = [(16_000, "cannot grow (making its tables failed"),  # the registry cannot be opened
              (70_000, "cannot grow (recording the batch B7 failed"),  # its log cannot hold the layout
              (150_000, f"cannot write {batch / 'crops'}/"),  # a crop cannot be written
              (300_000, "cannot grow (recording field ")]  # the registry fills after some fields
    recorded: dict = {}
    for limit, where in faults:
        done = _segment_on_a_small_disk(batch, registry, limit)
        assert done.returncode == 2, (limit, done.stderr[-3000:])
        assert "Traceback" not in done.stderr and where in done.stderr, (limit, done.stderr)
        assert "free space" in done.stderr and "run the same command again to resume" in done.stderr, done.stderr
        state = segment_state(batch, registry)
        assert state["integrity"] == [("ok",)]
        assert recorded.items() <= state["fields"].items()  # nothing recorded before is lost
        recorded = state["fields"]
        for label_id, (status, _, crop_path, sha) in state["labels"].items():
            if status == "found":  # every label recorded found has its crop, as recorded
                assert state["crops"][Path(crop_path).name] == sha, label_id
        assert not list((batch / "crops").glob("*.tmp"))
    assert 0 < len(recorded) < 12  # the last limit let some fields through
    assert puf(["segment", str(batch), "--registry", str(registry), *BIG_CROPS]) == 0
    assert segment_state(batch, registry) == reference


KILLS = 20


def test_segment_killed_at_random_moments_converges_on_an_uninterrupted_run(photographed, tmp_path):
    reference_batch = fresh_copy(photographed, tmp_path / "reference" / "B7")
    command = puf_command("segment", str(reference_batch), "--registry", str(tmp_path / "reference" / "r.sqlite"))
    longest = timed_run(command, tmp_path / "reference.log")
    reference = segment_state(reference_batch, tmp_path / "reference" / "r.sqlite")
    assert set(reference["fields"].values()) == {"done"} and len(reference["crops"]) == 144

    batch, registry = fresh_copy(photographed, tmp_path / "killed" / "B7"), tmp_path / "killed" / "r.sqlite"
    command = puf_command("segment", str(batch), "--registry", str(registry))
    log = tmp_path / "killed.log"
    killed = 0
    for moment in kill_moments(7, KILLS, longest):
        code = run_and_kill(command, moment, log)
        if code is None:
            killed += 1
            if registry.exists():
                assert segment_state(batch, registry)["integrity"] == [("ok",)]
            continue
        assert code == 0, log.read_text()[-2000:]
        assert segment_state(batch, registry) == reference  # it ended first: check it, then start over
        shutil.rmtree(batch / "crops")
        for path in registry.parent.glob("r.sqlite*"):
            path.unlink()
    timed_run(command, log)
    assert segment_state(batch, registry) == reference
    assert killed >= KILLS // 2
