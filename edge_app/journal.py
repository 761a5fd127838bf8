"""The device's journal: every verification, kept on the device in SQLite.

One row per verdict (time, verdict, label id, score, threshold, pattern, reason, the
bundle's version, the photo it came from, timings) with the label's crop as PNG bytes.

Power loss: the file is in WAL mode with ``synchronous=FULL``, and every record is one
transaction, so a verification that `record` returned is on the storage, and a write cut
off by a crash or power loss is rolled back when the journal is next opened; nothing
committed before it is lost and the file stays consistent.

Threads: the app records from its worker thread and may read the history from the UI
thread. A `Journal` holds one connection (``check_same_thread=False``) and serialises
every use of it with a lock, so one object can be shared; `export_csv` reads through a
connection of its own, so a long export never holds up a record.

The schema is versioned (``PRAGMA user_version``) and marked as a puf journal
(``PRAGMA application_id``); a file that is not one, is corrupt, or is of a newer version
is refused with a PufError and never written to. A journal of an older version is migrated
when opened, in one transaction.

Every row names the device that made it (``device_id``, a random id the journal draws once
and keeps in its ``journal_meta`` table), so the rows of many devices can meet in the central
registry; ``journal_meta`` also keeps how far the journal was exported for sync
(`edge_app.journal_sync`). Two processes may create the same new
journal at once (the app and `puf verify`, say): one writes the schema, the other finds it
made and both go on.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge_app.errors import PufError

SCHEMA_VERSION = 3  # 2: device_id in every row, journal_meta; 3: the verdict "revoked"
VERDICTS = ("genuine", "counterfeit", "revoked", "unreadable")  # what a row's verdict may be
APPLICATION_ID = 0x50554631  # "PUF1"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CSV_COLUMNS = ("id", "time", "verdict", "label_id", "score", "threshold", "pattern", "reason", "bundle_version",
               "source", "total_ms", "device_id")
_META_TABLE = "CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_VERIFICATIONS = f"""
CREATE TABLE verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,                 -- ISO 8601 UTC, seconds
    verdict TEXT NOT NULL CHECK (verdict IN {VERDICTS}),
    label_id TEXT,
    score REAL,
    threshold REAL NOT NULL,
    pattern TEXT,
    pattern_confidence REAL,
    reason TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    source TEXT NOT NULL,
    total_ms REAL,
    timings TEXT NOT NULL,              -- JSON: segment, model, search, total (ms)
    crop BLOB,                          -- PNG; never read when listing rows
    device_id TEXT NOT NULL             -- the device that checked (journal_meta's device_id)
)"""
_TIME_INDEX = "CREATE INDEX verifications_time ON verifications (time)"
_SCHEMA = (_VERIFICATIONS, _TIME_INDEX, _META_TABLE)
_ALL_COLUMNS = ("id, time, verdict, label_id, score, threshold, pattern, pattern_confidence, reason, bundle_version, "
                "source, total_ms, timings, crop, device_id")
# the state (version, application id, tables) of a file no one has written yet
_NEW_FILE: tuple[int, int, set[str]] = (0, 0, set())
_ENTRY_COLUMNS = ", ".join(CSV_COLUMNS)


@dataclass(frozen=True)
class JournalEntry:
    id: int
    time: str  # ISO 8601, UTC, e.g. "2026-11-25T07:31:02Z"
    verdict: str
    label_id: str | None
    score: float | None
    threshold: float
    pattern: str | None
    reason: str
    bundle_version: str
    source: str
    total_ms: float | None
    device_id: str


def utc_text(moment: datetime) -> str:
    """A datetime as the journal writes times (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def _sqlite_problem(error: sqlite3.Error, path: Path, doing: str) -> PufError:
    text = str(error)
    if "full" in text:
        return PufError(f"the journal {path} cannot grow: the database or disk is full ({doing} failed; the "
                        "entries already there are kept). Free space on the device, or export and archive "
                        "the journal")
    if "malformed" in text or "not a database" in text:
        return PufError(f"the journal {path} is damaged ({text}; {doing} failed). Keep a copy of the file; "
                        "sqlite3's .recover can save what is left")
    if "readonly" in text or "read-only" in text:
        return PufError(f"the journal {path} is on read-only storage ({doing} failed)")
    return PufError(f"the journal {path}: {doing} failed: {text}")


class Journal:
    """The device's record of verifications. Also a context manager."""

    def __init__(self, path: Path, *, create: bool = True, max_mb: float | None = None) -> None:
        """Open the journal at `path`, creating it unless `create` is False. `max_mb` caps the
        database's size, so the journal can never fill the device's storage: past it,
        `record` raises a PufError and the journal stays readable."""
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise PufError(f"no journal at {self.path} (the app writes it on the first verification)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise PufError(f"cannot make the journal's folder {self.path.parent}: "
                               f"{error.strerror or error}") from None
        elif self.path.is_dir():
            raise PufError(f"{self.path} is a folder, not a journal")
        else:
            _check_header(self.path)
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise PufError(f"cannot open the journal {self.path}: {error}") from None
        try:
            self._prepare(max_mb)
        except BaseException:
            self._db.close()
            raise

    def _prepare(self, max_mb: float | None) -> None:
        db = self._db
        state = self._state()
        if state == _NEW_FILE:
            state = self._create()
        version, application, tables = state
        if application != APPLICATION_ID or "verifications" not in tables:
            raise PufError(f"{self.path} is an SQLite file but not a puf journal; it was left as it is")
        elif version > SCHEMA_VERSION:
            raise PufError(f"the journal {self.path} is of version {version}, newer than this software reads "
                           f"({SCHEMA_VERSION}): update puf")
        elif version < SCHEMA_VERSION:
            self._migrate()
        self.device_id = self.meta("device_id")
        try:
            self._wal()
            db.execute("PRAGMA synchronous = FULL")
            if max_mb is not None:
                page = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count = {max(1, int(max_mb * 1e6 / page))}")
        except sqlite3.Error as error:
            raise _sqlite_problem(error, self.path, "opening") from None

    def _wal(self, patience_s: float = 10.0) -> None:
        """Switch to WAL. The switch needs the file to itself and SQLite does not wait for it
        (no busy handler), so another process opening the journal at the same moment makes
        it fail at once: try again for a while, as a writer would wait."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _state(self) -> tuple[int, int, set[str]]:
        """The file's schema version, application id and tables."""
        db = self._db
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            application = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            raise PufError(f"{self.path} is not a journal or is damaged ({error}); it was left as it is") from None
        return version, application, tables

    def _create(self) -> tuple[int, int, set[str]]:
        """Write the schema into the empty file; its state afterwards.

        Another process may be creating the same journal at this moment: the write lock is
        taken first (waiting for the other creator, as for any writer) and the file looked at
        again under it, so exactly one process writes the schema and the other finds it made.
        Every step starts from holding no lock, so SQLite's busy wait applies and the two
        never deadlock."""
        def create(db: sqlite3.Connection) -> None:
            if self._state() == _NEW_FILE:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("INSERT INTO journal_meta VALUES ('device_id', ?)", (new_device_id(),))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

        self._under_write_lock("creating the journal", create)
        return self._state()

    def _migrate(self) -> None:
        """Bring an older journal to this version: from 1, a device id drawn now goes into
        `journal_meta` and into every existing row; from 2, the table of verifications is
        copied into one whose verdicts may be "revoked" (SQLite cannot change a CHECK in
        place), ids kept. One transaction, the version looked at again under the write lock
        (another process may be migrating the same file)."""
        def migrate(db: sqlite3.Connection) -> None:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                device_id = new_device_id()
                db.execute(_META_TABLE)
                db.execute("INSERT INTO journal_meta VALUES ('device_id', ?)", (device_id,))
                db.execute(f"ALTER TABLE verifications ADD COLUMN device_id TEXT NOT NULL DEFAULT '{device_id}'")
            if version in (1, 2):
                db.execute("ALTER TABLE verifications RENAME TO verifications_v2")
                db.execute("DROP INDEX verifications_time")
                db.execute(_VERIFICATIONS)
                db.execute(_TIME_INDEX)
                db.execute(f"INSERT INTO verifications ({_ALL_COLUMNS}) SELECT {_ALL_COLUMNS} FROM verifications_v2")
                db.execute("DROP TABLE verifications_v2")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._under_write_lock("migrating the journal to this version", migrate)

    def _under_write_lock(self, doing: str, work: Callable[[sqlite3.Connection], None]) -> None:
        """Run `work` in one transaction that holds the write lock from its start (BEGIN
        IMMEDIATE), rolled back whole on any error; an SQLite error names what was `doing`."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                work(db)
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise
        except sqlite3.Error as error:
            raise _sqlite_problem(error, self.path, doing) from None

    def meta(self, key: str) -> str | None:
        """A value kept in `journal_meta` (None when unset)."""
        with self._lock:
            rows = self._read("SELECT value FROM journal_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            try:
                self._db.execute("INSERT INTO journal_meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                                 "SET value = excluded.value", (key, value))
            except sqlite3.Error as error:
                raise _sqlite_problem(error, self.path, f"recording {key}") from None

    # ---- writing -------------------------------------------------------------------------
    def record(self, verdict, crop: np.ndarray | None, bundle_version: str) -> int:
        """Record one `edge_app.verify.Verdict` (and the label's crop, BGR or grey uint8, if
        any) in one transaction; the new entry's id, once it is on the storage."""
        png = _encode_png(crop) if crop is not None else None
        timings = {key: round(float(value), 3) for key, value in (verdict.timings_ms or {}).items()}
        row = (utc_text(datetime.now(UTC)), verdict.verdict, verdict.label_id, _number(verdict.score),
               float(verdict.threshold), verdict.pattern, _number(verdict.pattern_confidence), verdict.reason or "",
               bundle_version, verdict.source or "", timings.get("total"), json.dumps(timings),
               png, self.device_id)
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO verifications (time, verdict, label_id, score, threshold, pattern, "
                    "pattern_confidence, reason, bundle_version, source, total_ms, timings, crop, device_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError:
                raise PufError(f"not a verdict: {verdict.verdict!r}") from None
            except sqlite3.Error as error:
                raise _sqlite_problem(error, self.path, "recording a verification") from None
            assert cursor.lastrowid is not None  # an INSERT sets it
            return cursor.lastrowid

    # ---- reading -------------------------------------------------------------------------
    def recent(self, limit: int = 100) -> list[JournalEntry]:
        """The latest `limit` entries, newest first."""
        with self._lock:
            rows = self._read(f"SELECT {_ENTRY_COLUMNS} FROM verifications ORDER BY id DESC LIMIT ?", (int(limit),))
        return [JournalEntry(*row) for row in rows]

    def after(self, entry_id: int, limit: int) -> list[JournalEntry]:
        """Up to `limit` entries with ids above `entry_id`, oldest first: what is new since a sync."""
        with self._lock:
            rows = self._read(f"SELECT {_ENTRY_COLUMNS} FROM verifications WHERE id > ? ORDER BY id LIMIT ?",
                              (int(entry_id), int(limit)))
        return [JournalEntry(*row) for row in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._read("SELECT count(*) FROM verifications")[0][0])

    def crop(self, entry_id: int) -> np.ndarray | None:
        """The crop stored with an entry (None when it has none), decoded as it was given."""
        with self._lock:
            rows = self._read("SELECT crop FROM verifications WHERE id = ?", (int(entry_id),))
        if not rows:
            raise PufError(f"the journal has no entry {entry_id}")
        if rows[0][0] is None:
            return None
        image = cv2.imdecode(np.frombuffer(rows[0][0], np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise PufError(f"the crop of journal entry {entry_id} is damaged")
        return image

    def export_csv(self, out: TextIO, since: datetime | None = None) -> int:
        """Write the entries (from `since` on, oldest first) as CSV with a header row; the
        number of rows written. Reads through its own connection: records go on meanwhile."""
        query = f"SELECT {_ENTRY_COLUMNS} FROM verifications"
        params: tuple = ()
        if since is not None:
            query += " WHERE time >= ?"
            params = (utc_text(since),)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        written = 0
        try:
            for row in reader.execute(query + " ORDER BY id", params):
                writer.writerow(["" if value is None else _csv_value(value) for value in row])
                written += 1
        except sqlite3.Error as error:
            raise _sqlite_problem(error, self.path, "exporting") from None
        finally:
            reader.close()
        return written

    def integrity(self) -> str:
        """SQLite's integrity check: "ok" for a sound file."""
        with self._lock:
            return "; ".join(row[0] for row in self._read("PRAGMA integrity_check"))

    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(query, params).fetchall()
        except sqlite3.Error as error:
            raise _sqlite_problem(error, self.path, "reading") from None

    # ---- closing -------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_device_id() -> str:
    """A device's id: random, so devices need no registration to stay apart."""
    return f"dev-{uuid.uuid4().hex[:16]}"


def _check_header(path: Path) -> None:
    """Refuse, before SQLite touches it, a non-empty file that is not SQLite at all."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as error:
        raise PufError(f"cannot read the journal {path}: {error.strerror or error}") from None
    if head and head != b"SQLite format 3\x00":
        raise PufError(f"{path} is not a journal (not an SQLite file); it was left as it is")


def _number(value) -> float | None:
    return None if value is None else float(value)


def _csv_value(value):
    return round(value, 6) if isinstance(value, float) else value


def _encode_png(crop: np.ndarray) -> bytes:
    image = np.asarray(crop)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise PufError(f"a crop must be a grey or BGR uint8 image, got {image.dtype} {image.shape}")
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise PufError(f"cannot encode the crop ({image.shape}) as PNG")
    return data.tobytes()
