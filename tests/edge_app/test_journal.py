"""The device's journal on real SQLite: records and reads back, survives a process killed
mid-write, refuses files that are not journals without touching them, says so when full,
is shared by a worker and a UI thread, and exports CSV through `puf journal`."""

import csv
import io
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.errors import PufError
from edge_app.journal import CSV_COLUMNS, SCHEMA_VERSION, Journal
from tests.journal_support import crop, verdict

ROOT = Path(__file__).resolve().parents[2]


def test_a_verification_is_recorded_and_read_back(tmp_path):
    with Journal(tmp_path / "j.sqlite") as journal:
        ids = [journal.record(verdict(i), crop(i, grey=i == 1) if i != 2 else None, "1-abcdef01") for i in range(4)]
        entries = journal.recent()
        assert [e.id for e in entries] == ids[::-1] and len(journal) == 4
        first = entries[-1]
        assert (first.verdict, first.label_id, first.score, first.threshold, first.pattern) == \
            ("genuine", "V1-0000-00", 0.5, 0.62, "p0")
        assert (first.reason, first.bundle_version, first.source, first.total_ms) == \
            ("reason 0", "1-abcdef01", "shot_0.png#0", 4.25)
        assert abs(datetime.strptime(first.time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                   - datetime.now(UTC)) < timedelta(minutes=5)
        assert entries[1].verdict == "unreadable" and entries[1].score is None and entries[1].label_id is None
        assert np.array_equal(journal.crop(ids[0]), crop(0))
        assert np.array_equal(journal.crop(ids[1]), crop(1, grey=True))
        assert journal.crop(ids[2]) is None
        assert [e.id for e in journal.recent(2)] == ids[:1:-1]
        with pytest.raises(PufError, match="no entry 99"):
            journal.crop(99)
        with pytest.raises(PufError, match="uint8"):
            journal.record(verdict(5), crop(5).astype(np.float32), "v")
    db = sqlite3.connect(tmp_path / "j.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.journal_support import crop, verdict
from edge_app.journal import Journal

journal = Journal({path!r})
i = 0
while True:
    entry = journal.record(verdict(i), crop(i), "1-abcdef01")
    print(entry, i, flush=True)
    i += 1
"""


def test_a_process_killed_mid_write_loses_nothing_committed(tmp_path):
    """A child records in a loop and reports each id once `record` returned; it is killed
    (SIGKILL) while writing. Every reported entry is there, intact, and the file is sound."""
    path = tmp_path / "journal.sqlite"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed = {}
    try:
        while len(committed) < 40:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            entry, i = map(int, line.split())
            committed[entry] = i
    finally:
        child.send_signal(signal.SIGKILL)  # it was writing the next entries all along
        child.wait(30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").exists()  # killed with its write-ahead log not checkpointed
    with Journal(path) as journal:
        assert journal.integrity() == "ok"
        entries = {e.id: e for e in journal.recent(10_000)}
        assert set(committed) <= set(entries)
        assert len(entries) >= len(committed)
        for entry, i in committed.items():
            expected = verdict(i)
            got = entries[entry]
            assert (got.verdict, got.label_id, got.score, got.reason, got.source) == \
                (expected.verdict, expected.label_id, expected.score, expected.reason, expected.source)
            assert np.array_equal(journal.crop(entry), crop(i))
        assert journal.record(verdict(0), crop(0), "v") > max(entries)  # and it goes on


def _sqlite_file(path: Path, sql: str) -> Path:
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.close()
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("label_id,verdict\nA,genuine\n") and p, "not a journal"),
    (lambda p: _sqlite_file(p, "CREATE TABLE labels (id TEXT); INSERT INTO labels VALUES ('x');"),
     "not a puf journal"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64) and p, "not a journal or is damaged"),
    (lambda p: (p.mkdir() or p), "is a folder"),
])
def test_a_file_that_is_not_a_journal_is_refused_and_left_as_it_is(tmp_path, make, message):
    path = make(tmp_path / "journal.sqlite")
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(PufError, match=message):
        Journal(path)
    if before is not None:
        assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()


def test_a_journal_of_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    _sqlite_file(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1};")
    with pytest.raises(PufError, match="newer than this software reads"):
        Journal(path)


def test_a_damaged_page_is_a_clear_error(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        for i in range(30):
            journal.record(verdict(i), crop(i), "v")
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    data[page * 2: page * 6] = b"\xff" * (page * 4)  # overwrite table pages after the schema
    path.write_bytes(bytes(data))
    with pytest.raises(PufError, match="is damaged"):
        with Journal(path) as journal:
            journal.recent(1000)
            [journal.crop(i) for i in range(1, 31)]


def test_a_full_journal_says_so_and_stays_readable(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path, max_mb=0.3) as journal:
        recorded = []
        with pytest.raises(PufError, match="database or disk is full"):
            for i in range(200):  # about 28 kB a crop: full long before 200
                recorded.append(journal.record(verdict(i), crop(i), "v"))
        assert 3 < len(recorded) < 200
        assert [e.id for e in journal.recent(1000)] == recorded[::-1]
        assert np.array_equal(journal.crop(recorded[-1]), crop(len(recorded) - 1))
        assert journal.integrity() == "ok"
    with Journal(path) as journal:  # without the cap it takes more
        assert journal.record(verdict(0), None, "v") > recorded[-1]


def _create_after_barrier(path: str, barrier, results) -> None:
    """One of the racing processes: it opens the new journal's file, waits at the barrier
    until the other has too, so both find it empty, then creates the journal and records."""
    import traceback

    from edge_app import journal as journal_module

    connect = sqlite3.connect

    def connect_then_wait(*args, **kwargs):
        db = connect(*args, **kwargs)
        barrier.wait(30)
        return db

    journal_module.sqlite3.connect = connect_then_wait
    try:
        with Journal(Path(path)) as journal:
            results.put(("ok", journal.record(verdict(0), crop(0), "v")))
    except PufError as error:
        results.put(("refused", str(error)))
    except BaseException:
        results.put(("traceback", traceback.format_exc()))


def test_two_processes_creating_a_new_journal_at_once_both_work(tmp_path):
    """Two real processes open the same not-yet-existing journal and are held at a barrier
    until both have found no journal there and opened the file, so they create it at once;
    both must then record, and the file is one sound WAL journal holding both entries (the
    second used to stop with "creating the journal failed: database is locked")."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(4):
        path = tmp_path / f"journal{attempt}.sqlite"
        barrier, results = context.Barrier(2), context.Queue()
        racers = [context.Process(target=_create_after_barrier, args=(str(path), barrier, results))
                  for _ in range(2)]
        for racer in racers:
            racer.start()
        outcomes = [results.get(timeout=120) for _ in racers]
        for racer in racers:
            racer.join(30)
        assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
        assert sorted(entry for _, entry in outcomes) == [1, 2]
        with Journal(path, create=False) as journal:
            assert journal.integrity() == "ok" and len(journal) == 2
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.close()


def test_a_worker_thread_records_while_the_ui_thread_reads(tmp_path):
    """One Journal shared by the app's two threads (it serialises its connection)."""
    journal = Journal(tmp_path / "j.sqlite")
    ids, errors, seen = [], [], []

    def worker() -> None:
        try:
            for i in range(150):
                ids.append(journal.record(verdict(i), crop(i % 5), "v"))
        except Exception as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    while thread.is_alive():
        entries = journal.recent(20)
        seen.append(len(entries))
        if entries:
            assert journal.crop(entries[0].id) is not None
            assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    thread.join()
    assert not errors
    assert [e.id for e in journal.recent(1000)] == ids[::-1]
    assert journal.integrity() == "ok"
    journal.close()


def test_export_writes_csv_with_a_header_and_since(tmp_path):
    with Journal(tmp_path / "checks #1?%.sqlite") as journal:  # a name that needs quoting in a URI
        for i in range(5):
            journal.record(verdict(i), crop(i), "1-abcdef01")
        out = io.StringIO()
        assert journal.export_csv(out) == 5
        rows = list(csv.reader(io.StringIO(out.getvalue())))
        assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 6
        first = dict(zip(rows[0], rows[1], strict=True))
        assert (first["id"], first["verdict"], first["label_id"], first["score"], first["threshold"]) == \
            ("1", "genuine", "V1-0000-00", "0.5", "0.62")
        assert (first["pattern"], first["reason"], first["bundle_version"], first["source"], first["total_ms"]) == \
            ("p0", "reason 0", "1-abcdef01", "shot_0.png#0", "4.25")
        assert dict(zip(rows[0], rows[3], strict=True))["score"] == ""  # unreadable: no score
        assert journal.export_csv(io.StringIO(), datetime.now(UTC) - timedelta(hours=1)) == 5
        assert journal.export_csv(io.StringIO(), datetime.now(UTC) + timedelta(days=1)) == 0


def test_puf_journal_lists_and_exports(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PUF_HOME", str(tmp_path / "home"))
    assert main(["journal", "list"]) == 2
    assert "no journal at" in capsys.readouterr().err
    assert not (tmp_path / "home" / "journal.sqlite").exists()
    with Journal(tmp_path / "home" / "journal.sqlite") as journal:
        for i in range(4):
            journal.record(verdict(i), crop(i), "1-abcdef01")
    assert main(["journal", "list", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["id", "time", "(UTC)", "verdict"]
    assert [line.split()[0] for line in lines[1:4]] == ["4", "3", "2"]
    assert "GENUINE" in lines[1] and "V1-0000-03" in lines[1] and "3 of 4 checks" in lines[-1]
    assert main(["journal", "list", "--json", "--journal", str(tmp_path / "home" / "journal.sqlite")]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in listed] == [4, 3, 2, 1] and listed[0]["label_id"] == "V1-0000-03"
    out = tmp_path / "sync" / "checks.csv"
    out.parent.mkdir()
    assert main(["journal", "export", str(out)]) == 0
    assert "wrote 4 checks" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 5 and list(out.parent.iterdir()) == [out]
    assert main(["journal", "export", "-", "--since", "2000-01-01"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert main(["journal", "export", "-", "--since", (datetime.now(UTC) + timedelta(days=1)).date().isoformat()]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["journal", "export", "-", "--since", "last week"]) == 2
    assert "--since must be a date" in capsys.readouterr().err
    assert main(["journal", "export", str(tmp_path / "no such folder" / "x.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err
