"""Device journals on their way home: a version-1 journal gains a device id in every row,
`puf journal export FOLDER` writes only what is new since the last sync, and a sync file
that is not one we wrote (bad rows, wrong types, huge) is refused whole, saying why."""

import json
import sqlite3
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.errors import PufError
from edge_app.journal import APPLICATION_ID, SCHEMA_VERSION, Journal
from edge_app.journal_sync import MAX_FILE_BYTES, ROWS_PER_FILE, SYNCED_TO, export_new, read_sync_file
from tests.journal_support import check, crop, verdict

# The journal's schema as version 1 wrote it (no device id, no journal_meta).
VERSION_1 = """
CREATE TABLE verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('genuine', 'counterfeit', 'unreadable')),
    label_id TEXT, score REAL, threshold REAL NOT NULL, pattern TEXT, pattern_confidence REAL,
    reason TEXT NOT NULL, bundle_version TEXT NOT NULL, source TEXT NOT NULL, total_ms REAL,
    timings TEXT NOT NULL, crop BLOB);
CREATE INDEX verifications_time ON verifications (time);
INSERT INTO verifications (time, verdict, label_id, score, threshold, pattern, pattern_confidence, reason,
    bundle_version, source, total_ms, timings) VALUES
    ('2026-11-01T08:00:00Z', 'genuine', 'B1-0000-00', 0.9, 0.6, 'p0', 0.99, '', '1-ab', 'a.png#0', 3.0, '{}'),
    ('2026-11-01T08:01:00Z', 'counterfeit', NULL, 0.2, 0.6, 'p1', 0.9, '', '1-ab', 'b.png#0', 3.0, '{}');
"""


# what version 2 added: a device id in every row, journal_meta
TO_VERSION_2 = """
ALTER TABLE verifications ADD COLUMN device_id TEXT NOT NULL DEFAULT 'dev-0a1b2c3d';
CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO journal_meta VALUES ('device_id', 'dev-0a1b2c3d');
"""


def old_journal(path: Path, version: int) -> Path:
    """A journal of `version` (1 or 2) as that version wrote it, holding two checks."""
    db = sqlite3.connect(path)
    db.executescript(VERSION_1 + (TO_VERSION_2 if version == 2 else "")
                     + f"PRAGMA user_version = {version}; PRAGMA application_id = {APPLICATION_ID};")
    db.close()
    return path


def test_a_version_1_journal_is_migrated_with_its_device_id_in_every_row(tmp_path):
    path = old_journal(tmp_path / "old.sqlite", 1)
    with Journal(path) as journal:
        device = journal.device_id
        journal.record(verdict(0), crop(0), "2-cd")
        entries = journal.recent()
        assert [e.device_id for e in entries] == [device] * 3
        assert [e.label_id for e in entries[1:]] == [None, "B1-0000-00"]
    assert device.startswith("dev-")
    with Journal(path) as journal:  # opened again: the same device, no second migration
        assert journal.device_id == device and len(journal) == 3
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    with Journal(tmp_path / "other.sqlite") as other:
        assert other.device_id != device


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_journal_keeps_its_rows_and_ids_and_takes_revoked_verdicts_which_sync_carries(tmp_path, version):
    path = old_journal(tmp_path / "old.sqlite", version)
    with Journal(path) as journal:
        revoked = journal.record(check("B1-0000-03", "revoked"), crop(0), "2-cd")
        assert revoked == 3 and [e.verdict for e in journal.recent()] == ["revoked", "counterfeit", "genuine"]
        (tmp_path / "usb").mkdir()
        [(synced, _)] = export_new(journal, tmp_path / "usb")
    assert [e.verdict for e in read_sync_file(synced).entries] == ["genuine", "counterfeit", "revoked"]
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):  # the check on verdicts is kept, with revoked in it
        db.execute("INSERT INTO verifications (time, verdict, threshold, reason, bundle_version, source, timings, "
                   "device_id) VALUES ('2026-11-01T08:00:00Z', 'stolen', 0.6, '', '', '', '{}', 'dev-1')")
    db.close()


def test_export_to_a_folder_writes_what_is_new_since_the_last_sync(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PUF_HOME", str(tmp_path / "home"))
    stick = tmp_path / "usb"
    stick.mkdir()
    with Journal(tmp_path / "home" / "journal.sqlite") as journal:
        for i in range(3):
            journal.record(verdict(i), crop(i), "1-ab")
        device = journal.device_id
    assert main(["journal", "export", str(stick)]) == 0
    assert "wrote 3 checks" in capsys.readouterr().err
    [first] = stick.iterdir()
    assert first.name == f"puf-journal-{device}-0000000001-0000000003.json"
    synced = read_sync_file(first)
    assert synced.device_id == device and [e.id for e in synced.entries] == [1, 2, 3]
    assert synced.entries[0].verdict == "genuine" and synced.entries[0].label_id == "V1-0000-00"
    assert main(["journal", "export", str(stick)]) == 0
    assert "nothing new" in capsys.readouterr().err and len(list(stick.iterdir())) == 1
    with Journal(tmp_path / "home" / "journal.sqlite") as journal:
        journal.record(verdict(3), None, "1-ab")
        assert journal.meta(SYNCED_TO) == "3"
    assert main(["journal", "export", str(stick)]) == 0
    second = stick / f"puf-journal-{device}-0000000004-0000000004.json"
    assert [e.id for e in read_sync_file(second).entries] == [4]
    assert main(["journal", "export", str(stick), "--again"]) == 0  # all again; the mark stays
    assert [e.id for e in read_sync_file(stick / f"puf-journal-{device}-0000000001-0000000004.json").entries] \
        == [1, 2, 3, 4]
    with Journal(tmp_path / "home" / "journal.sqlite") as journal:
        assert journal.meta(SYNCED_TO) == "4"
        with pytest.raises(PufError, match="not a folder"):
            export_new(journal, stick / "missing")
    assert not [p for p in stick.iterdir() if p.name.startswith(".")]


# A signature of the right shape (whether it holds is `check_signed`'s question, at import)
SIGNATURE = {"algorithm": "ed25519", "key_id": "0123456789abcdef", "value": "AAAA"}


def _sync_file(tmp_path, entries, **header):
    data = {"format": "puf-journal-sync", "version": 2, "device_id": "dev-1", "entries": entries,
            "signature": SIGNATURE, **header}
    path = tmp_path / "sync.json"
    path.write_text(json.dumps(data))
    return path


GOOD = [1, "2026-11-01T08:00:00Z", "genuine", "B1-0000-00", 0.9, 0.6, "p0", "", "1-ab", "a.png#0", 3.0, "dev-1"]


def _with(index, value):
    row = list(GOOD)
    row[index] = value
    return [row]


@pytest.mark.parametrize("entries, header, message", [
    ([GOOD], {"format": "csv"}, "not a journal sync file"),
    ([GOOD], {"version": 9}, "version 9"),
    ({"a": 1}, {}, "must be a list"),
    ([GOOD[:5]], {}, "entry 0: must be a list of 12 values"),
    ([["x"] * 12], {}, "entry 0: id must be a positive whole number"),
    (_with(0, True), {}, "id must be a positive whole number"),
    (_with(0, -3), {}, "id must be a positive whole number"),
    (_with(1, "yesterday"), {}, "time must be UTC"),
    (_with(2, "GENUINE"), {}, "verdict must be one of"),
    (_with(3, 17), {}, "label_id must be a non-empty text"),
    (_with(3, "x" * 5000), {}, "label_id must be a non-empty text of at most 4096"),
    (_with(4, "0.9"), {}, "score must be a finite number"),
    (_with(5, None), {}, "threshold must be a finite number"),
    (_with(11, "dev-2"), {}, "entry 0 is of device 'dev-2'"),
    ([GOOD] * (ROWS_PER_FILE + 1), {}, "more than the 50000"),
    ([GOOD, GOOD], {}, "entry 1 repeats the id 1"),
    # text that is not UTF-8 (a lone surrogate), NULs, and ids outside their grammar
    (_with(7, "bad \ud800 reason"), {}, "entry 0: reason is not valid text \\(a lone surrogate"),
    (_with(3, "B1-0000-\udc00"), {}, "entry 0: label_id is not valid text"),
    (_with(9, "a.png\x00#0"), {}, "entry 0: source holds a NUL character"),
    (_with(3, 'B1"-0000-00'), {}, "entry 0: 'B1\"-0000-00' is not a label id"),
    (_with(3, "B1-0000-00\n"), {}, "is not a label id"),
    (_with(3, "B1-0000-0\u0661"), {}, "is not a label id"),  # an Arabic-Indic digit
    (_with(11, "../etc"), {}, "entry 0: device_id: device id '../etc' is not allowed: a device id is 1-64 letters"),
    ([GOOD], {"device_id": "dev\ud800"}, "device_id: device id .* is not allowed: a device id is 1-64 letters"),
    ([GOOD], {"device_id": "dev-1' OR '1'='1"}, "device_id: device id .* is not allowed: a device id is 1-64 letters"),
    # unsigned, or a signature of the wrong shape
    ([GOOD], {"version": 1}, "an unsigned sync file \\(version 1"),
    ([GOOD], {"signature": None}, "not signed"),
    ([GOOD], {"signature": {**SIGNATURE, "algorithm": "none"}}, "not signed"),
    ([GOOD], {"signature": {**SIGNATURE, "key_id": "\ud800"}}, "not signed"),
])
def test_a_hostile_sync_file_is_refused_whole(tmp_path, entries, header, message):
    with pytest.raises(PufError, match=message) as refused:
        read_sync_file(_sync_file(tmp_path, entries, **header))
    assert "refused, nothing imported" in str(refused.value)


def test_a_sync_file_that_is_not_json_or_too_large_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\x00\xff{not json")
    with pytest.raises(PufError, match="is not a journal sync file"):
        read_sync_file(path)
    path.write_text("[" * 100_000)
    with pytest.raises(PufError, match="is not a journal sync file"):
        read_sync_file(path)
    path.write_text(json.dumps({"format": "puf-journal-sync", "version": 2, "device_id": "dev-1",
                                "entries": [GOOD], "signature": SIGNATURE, "extra": float("nan")}))
    with pytest.raises(PufError, match="NaN is not a number JSON knows"):
        read_sync_file(path)
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: huge on paper, nothing on the disk
    with pytest.raises(PufError, match="more than a journal sync file can be"):
        read_sync_file(path)
    with pytest.raises(PufError, match="no journal sync file"):
        read_sync_file(tmp_path / "missing.json")
