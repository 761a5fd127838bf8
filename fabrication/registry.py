"""The label registry: one SQLite file per factory recording every batch, field and label.

Segmentation writes it; the trainer marks labels enrolled or held out; anyone can ask what
became of a label. Each field is recorded in one transaction that replaces what an earlier
run recorded for it, so re-running a step is idempotent and an interrupted run leaves
either the old record or the new one. The file is in WAL mode: readers do not block the
writer.

A label's status is one of:

* ``found``: segmented, its crop written;
* ``rejected``: seen but not usable (cut by the field's edge, failed a check, or its
  field's position was ambiguous); ``reason`` says why;
* ``missing``: its field was photographed but the label was not found at all;
* ``enrolled``: in at least one bundle. Which bundles is the fact, kept per bundle in the
  table ``enrolled`` (bundle, label_id), the bundle named by its resolved path: enrolling
  a label into bundle A says nothing of bundle B, and removing it from A (`puf unenroll`)
  leaves it enrolled while B holds it. The status is kept with those rows, in their
  transaction (`record_enrolled`, `record_removed`), never set alone;
* ``held_out``: kept out of enrollment and training (`puf hold-out`) until released.

Segmentation never overwrites enrolled or held-out labels: the enrolled fingerprint was
made from the recorded crop. A registry of schema 1 (a global status only) gains the table
on opening; its enrolled labels are recorded as enrolled into `UNKNOWN_BUNDLE`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edge_app.errors import PufError
from edge_app.ids import check_id
from edge_app.label_crop import QUALITY_FIELDS, Quality
from edge_app.layout import BatchLayout

SCHEMA_VERSION = 2
# the bundle a label enrolled under schema 1 is recorded in: which one was never written down
UNKNOWN_BUNDLE = "(a bundle enrolled into before registry schema 2)"
LABEL_STATUSES = ("found", "rejected", "missing", "enrolled", "held_out")
LOCKED_STATUSES = ("enrolled", "held_out")
FIELD_STATUSES = ("done", "ambiguous", "failed", "unreadable")

# a label's segmentation quality, one REAL column a figure (`edge_app.label_crop.Quality`)
_QUALITY_COLUMNS = ",\n    ".join(f"{name} REAL" for name in QUALITY_FIELDS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    layout TEXT NOT NULL,
    source TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fields (
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    field INTEGER NOT NULL,
    file TEXT,
    signature TEXT,
    status TEXT NOT NULL CHECK (status IN {FIELD_STATUSES}),
    detail TEXT,
    method TEXT,
    labels_found INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    shift_x_um REAL,
    shift_y_um REAL,
    elapsed_ms REAL,
    updated REAL NOT NULL,
    PRIMARY KEY (batch_id, field)
);
CREATE TABLE IF NOT EXISTS labels (
    label_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    field INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    pattern TEXT,
    status TEXT NOT NULL CHECK (status IN {LABEL_STATUSES}),
    reason TEXT,
    crop_path TEXT,
    sha256 TEXT,
    corners TEXT,
    orientation TEXT,
    glyph_pattern TEXT,
    glyph_score REAL,
    {_QUALITY_COLUMNS}
);
CREATE INDEX IF NOT EXISTS labels_by_field ON labels (batch_id, field);
CREATE INDEX IF NOT EXISTS labels_by_status ON labels (status);
CREATE TABLE IF NOT EXISTS enrolled (
    bundle TEXT NOT NULL,
    label_id TEXT NOT NULL REFERENCES labels(label_id),
    PRIMARY KEY (bundle, label_id)
);
CREATE INDEX IF NOT EXISTS enrolled_by_label ON enrolled (label_id);
CREATE TABLE IF NOT EXISTS rejections (
    batch_id TEXT NOT NULL,
    field INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT,
    label_id TEXT,
    corners TEXT,
    PRIMARY KEY (batch_id, field, idx)
);
"""


@dataclass(frozen=True)
class FieldRecord:
    batch_id: str
    field: int
    status: str  # one of FIELD_STATUSES
    file: str | None = None
    signature: str | None = None  # size and mtime of the image, to notice a re-shot field
    detail: str | None = None
    method: str | None = None
    labels_found: int = 0
    rejected: int = 0
    shift_x_um: float | None = None
    shift_y_um: float | None = None
    elapsed_ms: float | None = None


@dataclass(frozen=True)
class LabelRecord:
    label_id: str
    batch_id: str
    field: int
    slot: int
    row: int
    col: int
    status: str  # one of LABEL_STATUSES
    pattern: str | None = None  # the layout's pattern class for the slot
    reason: str | None = None
    crop_path: str | None = None  # relative to the batch folder
    sha256: str | None = None  # of the crop file's bytes
    corners: str | None = None  # JSON [[x, y] x 4] in the field image, TL TR BR BL
    orientation: str | None = None
    glyph_pattern: str | None = None  # the pattern read from the glyph, when templates were given
    glyph_score: float | None = None
    quality: Quality | None = None  # of a found label's crop: its columns are Quality's figures

    def columns(self) -> tuple:
        """The record as its row of the labels table (`LABEL_COLUMNS`)."""
        quality = [getattr(self.quality, name) if self.quality else None for name in QUALITY_FIELDS]
        return (*(getattr(self, name) for name in _RECORD_COLUMNS), *quality)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LabelRecord:
        """A row of the labels table (this registry's or the central one's) as a record."""
        figures = {name: row[name] for name in QUALITY_FIELDS}
        quality = None if all(v is None for v in figures.values()) else Quality(**figures)
        return cls(**{name: row[name] for name in _RECORD_COLUMNS}, quality=quality)


@dataclass(frozen=True)
class RejectionRecord:
    reason: str
    detail: str | None = None
    label_id: str | None = None  # when the rejected candidate could be placed
    corners: str | None = None  # JSON outline in the field image


_RECORD_COLUMNS = [f.name for f in fields(LabelRecord) if f.name != "quality"]
LABEL_COLUMNS = [*_RECORD_COLUMNS, *QUALITY_FIELDS]
_FIELD_COLUMNS = [f.name for f in fields(FieldRecord)]


class Registry:
    """The registry file; open it with ``with Registry(path) as registry:``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self.transaction("making its tables"):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema', ?)",
                                     (str(SCHEMA_VERSION),))
                elif row["value"] == "1":
                    self._migrate_from_1()
                elif int(row["value"]) != SCHEMA_VERSION:
                    raise PufError(f"{self.path} is a registry of schema {row['value']}; this "
                                   f"version of puf reads schema {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            self.close()
            raise self._problem(error, "opening it", f"cannot open the registry {self.path}: {error}") from None
        except OSError as error:
            self.close()
            raise PufError(f"cannot open the registry {self.path}: {error}") from None
        except PufError:
            self.close()
            raise

    def _migrate_from_1(self) -> None:
        """Schema 1 to 2 (inside the opening transaction, which made the table): each label
        enrolled under schema 1 is recorded as enrolled into `UNKNOWN_BUNDLE`, so it stays
        enrolled and its crop stays locked; enrolling it again into its bundle records that one."""
        db = self._connection
        db.execute("INSERT OR IGNORE INTO enrolled SELECT ?, label_id FROM labels WHERE status='enrolled'",
                   (UNKNOWN_BUNDLE,))
        db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise PufError(f"the registry {self.path} is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, doing: str = "a write") -> Iterator[sqlite3.Connection]:
        """All writes inside happen together or not at all; SQLite's errors (a full disk
        among them) become a PufError saying what `doing` failed."""
        db = self._connection
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")  # a full disk may fail the commit itself
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as error:
            raise self._problem(error, doing) from None

    def _problem(self, error: sqlite3.DatabaseError, doing: str, otherwise: str | None = None) -> PufError:
        """SQLite's error in words: a full disk (SQLITE_FULL, or the write error a file size
        limit gives) names where to free space; the transaction failed whole, so nothing
        recorded before is lost."""
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
            return PufError(f"the registry {self.path} cannot grow ({doing} failed: {error}): the disk "
                            f"holding {self.path.parent} is full or failing. What was recorded before is "
                            "kept: free space there and run the same command again to resume")
        return PufError(otherwise or f"the registry {self.path}: {doing} failed: {error}")

    # ---- writing -------------------------------------------------------------------
    def upsert_batch(self, layout: BatchLayout, source: str | None = None) -> None:
        layout_json = json.dumps(layout.to_dict(), sort_keys=True)
        with self.transaction(f"recording the batch {layout.batch_id}") as db:
            row = db.execute("SELECT layout FROM batches WHERE batch_id=?",
                             (layout.batch_id,)).fetchone()
            if row is not None and row["layout"] != layout_json:
                raise PufError(f"the registry already holds a batch {layout.batch_id!r} with "
                               "another layout; batch ids must be unique in a factory")
            db.execute("INSERT INTO batches VALUES (?, ?, ?, ?) ON CONFLICT(batch_id) DO UPDATE "
                       "SET source=excluded.source, updated=excluded.updated",
                       (layout.batch_id, layout_json, source, time.time()))

    def record_field(self, record: FieldRecord, labels: Iterable[LabelRecord] = (),
                     rejections: Iterable[RejectionRecord] = ()) -> None:
        """Replace everything recorded for one field, in one transaction. Labels that are
        enrolled or held out keep their record."""
        if record.status not in FIELD_STATUSES:
            raise ValueError(f"field status {record.status!r} is not one of {FIELD_STATUSES}")
        labels = list(labels)
        for label in labels:
            check_id("label", label.label_id)
            if label.status not in LABEL_STATUSES:
                raise ValueError(f"label status {label.status!r} is not one of {LABEL_STATUSES}")
        with self.transaction(f"recording field {record.field} of {record.batch_id}") as db:
            db.execute(
                f"INSERT OR REPLACE INTO fields ({', '.join(_FIELD_COLUMNS)}, updated) "
                f"VALUES ({', '.join('?' * (len(_FIELD_COLUMNS) + 1))})",
                (*(getattr(record, c) for c in _FIELD_COLUMNS), time.time()))
            db.execute(f"DELETE FROM labels WHERE batch_id=? AND field=? AND status NOT IN "
                       f"{LOCKED_STATUSES}", (record.batch_id, record.field))
            db.execute("DELETE FROM rejections WHERE batch_id=? AND field=?",
                       (record.batch_id, record.field))
            db.executemany(
                f"INSERT INTO labels ({', '.join(LABEL_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(LABEL_COLUMNS))}) ON CONFLICT(label_id) DO NOTHING",
                [label.columns() for label in labels])
            db.executemany(
                "INSERT INTO rejections VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(record.batch_id, record.field, i, r.reason, r.detail, r.label_id, r.corners)
                 for i, r in enumerate(rejections)])

    def set_status(self, label_ids: Iterable[str], status: str) -> int:
        """Mark labels (e.g. held out); returns how many exist and were set. Enrollment is
        recorded per bundle (`record_enrolled`), and an enrolled label keeps its status until
        every bundle holding it lost it (`record_removed`)."""
        if status not in LABEL_STATUSES:
            raise PufError(f"label status {status!r} is not one of {', '.join(LABEL_STATUSES)}")
        if status == "enrolled":
            raise PufError("a label is enrolled into a bundle: record it with record_enrolled(bundle, ...)")
        label_ids = list(label_ids)
        with self.transaction(f"marking labels {status}") as db:
            enrolled = self._enrolled_among(db, label_ids)
            if enrolled:
                label_id, bundle = enrolled[0]
                raise PufError(f"{len(enrolled)} of the labels are enrolled (e.g. {label_id} into {bundle}): "
                               f"remove them from their bundles first (puf unenroll); nothing marked {status}")
            cursor = db.executemany("UPDATE labels SET status=? WHERE label_id=?",
                                    [(status, label_id) for label_id in label_ids])
            return cursor.rowcount

    @staticmethod
    def _enrolled_among(db: sqlite3.Connection, label_ids: list[str]) -> list[tuple[str, str]]:
        """(label, a bundle it is enrolled into) for each of `label_ids` some bundle holds."""
        found = []
        for label_id in label_ids:
            row = db.execute("SELECT bundle FROM enrolled WHERE label_id=? ORDER BY bundle LIMIT 1",
                             (label_id,)).fetchone()
            if row is not None:
                found.append((label_id, row["bundle"]))
        return found

    def record_enrolled(self, bundle: str, label_ids: Iterable[str]) -> None:
        """Record labels as enrolled into `bundle` (its resolved path), status enrolled, in one
        transaction; labels the registry does not hold are passed over."""
        label_ids = list(label_ids)
        with self.transaction(f"recording labels enrolled into {bundle}") as db:
            db.executemany("INSERT OR IGNORE INTO enrolled SELECT ?, label_id FROM labels WHERE label_id=?",
                           [(bundle, label_id) for label_id in label_ids])
            db.executemany("UPDATE labels SET status='enrolled' WHERE label_id=? AND EXISTS "
                           "(SELECT 1 FROM enrolled WHERE enrolled.label_id=labels.label_id)",
                           [(label_id,) for label_id in label_ids])

    def record_removed(self, bundle: str, label_ids: Iterable[str]) -> int:
        """Record labels as no longer in `bundle`; those no other bundle holds become found
        again. Returns how many records of the bundle were removed."""
        label_ids = list(label_ids)
        with self.transaction(f"recording labels removed from {bundle}") as db:
            removed = db.executemany("DELETE FROM enrolled WHERE bundle=? AND label_id=?",
                                     [(bundle, label_id) for label_id in label_ids]).rowcount
            db.executemany("UPDATE labels SET status='found' WHERE label_id=? AND status='enrolled' AND NOT EXISTS "
                           "(SELECT 1 FROM enrolled WHERE enrolled.label_id=labels.label_id)",
                           [(label_id,) for label_id in label_ids])
            return removed

    # ---- reading -------------------------------------------------------------------
    def batch_layout(self, batch_id: str) -> BatchLayout | None:
        row = self._connection.execute("SELECT layout FROM batches WHERE batch_id=?",
                               (batch_id,)).fetchone()
        return None if row is None else BatchLayout.from_dict(json.loads(row["layout"]))

    def field(self, batch_id: str, field: int) -> FieldRecord | None:
        row = self._connection.execute("SELECT * FROM fields WHERE batch_id=? AND field=?",
                               (batch_id, field)).fetchone()
        return None if row is None else FieldRecord(**{c: row[c] for c in _FIELD_COLUMNS})

    def fields(self, batch_id: str) -> list[FieldRecord]:
        rows = self._connection.execute("SELECT * FROM fields WHERE batch_id=? ORDER BY field", (batch_id,))
        return [FieldRecord(**{c: row[c] for c in _FIELD_COLUMNS}) for row in rows]

    def label(self, label_id: str) -> LabelRecord | None:
        row = self._connection.execute("SELECT * FROM labels WHERE label_id=?", (label_id,)).fetchone()
        return None if row is None else LabelRecord.from_row(row)

    def labels(self, batch_id: str | None = None, status: str | None = None,
               field: int | None = None) -> list[LabelRecord]:
        where, values = [], []
        for column, value in (("batch_id", batch_id), ("status", status), ("field", field)):
            if value is not None:
                where.append(f"{column}=?")
                values.append(value)
        sql = "SELECT * FROM labels" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._connection.execute(sql + " ORDER BY label_id", values)
        return [LabelRecord.from_row(row) for row in rows]

    def enrolled_in(self, bundle: str) -> set[str]:
        """The labels recorded as enrolled into `bundle` (its resolved path)."""
        rows = self._connection.execute("SELECT label_id FROM enrolled WHERE bundle=?", (bundle,))
        return {row["label_id"] for row in rows}

    def locked_labels(self, batch_id: str, field: int) -> set[str]:
        """Labels of a field whose crops must not change (enrolled or held out)."""
        rows = self._connection.execute(f"SELECT label_id FROM labels WHERE batch_id=? AND field=? AND "
                                f"status IN {LOCKED_STATUSES}", (batch_id, field))
        return {row["label_id"] for row in rows}

    def rejections(self, batch_id: str, field: int | None = None
                   ) -> list[tuple[int, RejectionRecord]]:
        sql = "SELECT * FROM rejections WHERE batch_id=?"
        values: list = [batch_id]
        if field is not None:
            sql += " AND field=?"
            values.append(field)
        rows = self._connection.execute(sql + " ORDER BY field, idx", values)
        return [(row["field"], RejectionRecord(row["reason"], row["detail"], row["label_id"],
                                               row["corners"])) for row in rows]

    def counts(self, batch_id: str) -> dict[str, dict[str, int]]:
        """How many fields and labels of a batch are in each status."""
        fields_by = dict(self._connection.execute(
            "SELECT status, COUNT(*) FROM fields WHERE batch_id=? GROUP BY status", (batch_id,)))
        labels_by = dict(self._connection.execute(
            "SELECT status, COUNT(*) FROM labels WHERE batch_id=? GROUP BY status", (batch_id,)))
        return {"fields": fields_by, "labels": labels_by}

