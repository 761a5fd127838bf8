"""The central label registry: every factory's batches and labels, and the devices' checks, in one database.

One factory needs no server (its `fabrication.registry` is an SQLite file); a brand with several
factories pushes each factory's registry into one central database, PostgreSQL in production
(any SQLAlchemy URL of PostgreSQL or SQLite works: the same code speaks both). The factory
tables are not defined twice: they are read (SQLAlchemy reflection) from the schema
`fabrication.registry` writes, so the central copy has the same columns, keys and checks;
only what is central alone is defined here: which factory a batch came from, the devices
and their public keys, and the checks they sent home (`edge_app.journal_sync`).

A push mirrors each batch in one transaction: rows the central copy lacks are inserted, rows
that differ are updated, rows the factory no longer has are removed, and the rest is left
alone, so pushing again changes nothing. Batch ids must be unique across the brand: a batch
id another factory pushed first is refused. Importing a journal keeps each check once (by
device and entry id), so a stick imported twice changes nothing. A device's public key is
registered once (`add_device`); an import takes only files signed by the key registered for
the device they claim, so a forged file can never take the place of a real one, and takes
all its files in one transaction: one bad file, and nothing of the import is kept.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from edge_app.errors import PufError
from edge_app.ids import check_id
from edge_app.journal import CSV_COLUMNS, TIME_FORMAT, VERDICTS
from edge_app.journal_sync import SyncFile, check_signed, read_sync_file
from edge_app.revocations import Revocation, check_reason
from edge_app.signing import key_id, load_public_key, public_pem, raw_public_bytes
from fabrication import registry

CENTRAL_SCHEMA_VERSION = 3  # 2: device_keys; 3: revocations
MIRRORED = ("batches", "fields", "labels", "rejections")  # the factory's tables, as segment writes them


def _metadata() -> sa.MetaData:
    """The factory's tables reflected from `fabrication.registry`'s own schema (REAL as double
    precision: PostgreSQL's REAL is 4 bytes), then the tables only the central registry has."""

    def empty_registry() -> sqlite3.Connection:
        db = sqlite3.connect(":memory:")
        db.executescript(registry._SCHEMA)
        return db

    metadata = sa.MetaData()

    @sa.event.listens_for(metadata, "column_reflect")
    def _double(inspector, table, column: dict) -> None:
        if isinstance(column["type"], sa.REAL):
            column["type"] = sa.Double()

    engine = sa.create_engine("sqlite://", creator=empty_registry)
    metadata.reflect(engine, only=("meta", *MIRRORED))
    engine.dispose()
    sa.Table("batch_origin", metadata,
             sa.Column("batch_id", sa.Text, sa.ForeignKey("batches.batch_id"), primary_key=True),
             sa.Column("factory", sa.Text, nullable=False),
             sa.Column("pushed", sa.Double, nullable=False))
    sa.Table("devices", metadata,
             sa.Column("device_id", sa.Text, primary_key=True),
             sa.Column("name", sa.Text),
             sa.Column("lat", sa.Double),
             sa.Column("lon", sa.Double))
    sa.Table("device_keys", metadata,  # the key a device signs its sync files with
             sa.Column("device_id", sa.Text, sa.ForeignKey("devices.device_id"), primary_key=True),
             sa.Column("key_id", sa.Text, nullable=False),
             sa.Column("public_key", sa.Text, nullable=False),  # PEM
             sa.Column("registered", sa.Double, nullable=False))
    sa.Table("revocations", metadata,  # labels revoked (stolen, recalled): region exports leave them out
             sa.Column("label_id", sa.Text, primary_key=True),
             sa.Column("time", sa.Text, nullable=False),  # ISO 8601 UTC
             sa.Column("reason", sa.Text, nullable=False))
    sa.Table("verifications", metadata,
             sa.Column("device_id", sa.Text, sa.ForeignKey("devices.device_id"), primary_key=True),
             sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("time", sa.Text, nullable=False),  # ISO 8601 UTC, as the journal writes it
             sa.Column("verdict", sa.Text, sa.CheckConstraint(f"verdict IN {VERDICTS}"), nullable=False),
             sa.Column("label_id", sa.Text, index=True),
             sa.Column("score", sa.Double),
             sa.Column("threshold", sa.Double, nullable=False),
             sa.Column("pattern", sa.Text),
             sa.Column("reason", sa.Text, nullable=False),
             sa.Column("bundle_version", sa.Text, nullable=False),
             sa.Column("source", sa.Text, nullable=False),
             sa.Column("total_ms", sa.Double))
    return metadata


TABLES = _metadata()


@dataclass(frozen=True)
class CloneAlert:
    kind: str  # "two_places": genuine on two devices within the window; "checked_often": over the threshold
    label_id: str
    devices: tuple[str, ...]  # two_places: in the order they checked the label
    checks: int  # the label's checks (two_places: the two that raised the alert)
    first: str  # times, ISO 8601 UTC (two_places: devices[0]'s check)
    last: str  # (two_places: devices[1]'s check)
    distance_km: float | None = None  # two_places: None when a device's place is not known


class CentralRegistry:
    """The central database at an SQLAlchemy URL; ``with CentralRegistry(url) as central:``."""

    def __init__(self, url: str) -> None:
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise PufError(f"{url!r} is not a database URL (like postgresql+psycopg://user:pw@host/db)") from None
        if parsed.get_backend_name() not in ("postgresql", "sqlite"):
            raise PufError(f"the central registry runs on PostgreSQL (or SQLite), not {parsed.get_backend_name()}")
        self.where = parsed.render_as_string(hide_password=True)
        try:
            self.engine = sa.create_engine(parsed)
        except (sa.exc.ArgumentError, ImportError) as error:
            raise PufError(f"cannot use the central registry {self.where}: {error}") from None
        try:
            with self._transaction("making its tables") as db:
                TABLES.create_all(db)
                meta = TABLES.tables["meta"]
                held = dict(db.execute(sa.select(meta.c.key, meta.c.value)).all())
                wanted = {"schema": str(registry.SCHEMA_VERSION), "central_schema": str(CENTRAL_SCHEMA_VERSION)}
                if not held:
                    db.execute(meta.insert(), [{"key": k, "value": v} for k, v in wanted.items()])
                elif held.get("central_schema") in ("1", "2") and held["schema"] == wanted["schema"]:
                    # 1 -> 2 -> 3: the device_keys and revocations tables are new (create_all made them),
                    # and a check may be "revoked"
                    _allow_every_verdict(db)
                    db.execute(meta.update().where(meta.c.key == "central_schema").values(
                        value=str(CENTRAL_SCHEMA_VERSION)))
                elif {k: held.get(k) for k in wanted} != wanted:
                    raise PufError(f"the central registry {self.where} is of schema {held}; this puf writes {wanted}")
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> CentralRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sa.Connection]:
        """One transaction; the database's errors as a PufError saying what `doing` failed."""
        try:
            with self.engine.begin() as db:
                yield db
        except sa.exc.IntegrityError as error:
            raise PufError(f"the central registry {self.where} refused {doing} (another push or import of "
                           f"the same rows at the same time? run it again): {error.orig}") from None
        except sa.exc.DBAPIError as error:
            raise PufError(f"the central registry {self.where}: {doing} failed: {error.orig}") from None

    # ---- revocations --------------------------------------------------------------------
    def revoke(self, label_ids: Sequence[str], reason: str) -> tuple[list[str], list[str]]:
        """Record `label_ids` revoked, in one transaction: the labels newly revoked and those
        already revoked. A label no factory pushed is refused, and nothing is kept."""
        wanted = list(dict.fromkeys(check_id("label", i) for i in label_ids))
        if not wanted:
            raise PufError("give the labels to revoke")
        check_reason(reason)
        labels, revocations = TABLES.tables["labels"], TABLES.tables["revocations"]
        with self._transaction("recording revocations") as db:
            known = set(db.execute(sa.select(labels.c.label_id).where(labels.c.label_id.in_(wanted))).scalars())
            unknown = [i for i in wanted if i not in known]
            if unknown:
                raise PufError(f"label {unknown[0]} is not in the central registry (puf registry push its batch "
                               "first): nothing revoked")
            held = set(db.execute(sa.select(revocations.c.label_id)
                                  .where(revocations.c.label_id.in_(wanted))).scalars())
            new = [i for i in wanted if i not in held]
            now = datetime.now(UTC).strftime(TIME_FORMAT)
            if new:
                db.execute(revocations.insert(), [{"label_id": i, "time": now, "reason": reason} for i in new])
        return new, [i for i in wanted if i in held]

    def revocations(self) -> list:
        """Every revoked label, oldest first, as `edge_app.revocations.Revocation` (its pattern
        from the labels table)."""
        labels, revocations = TABLES.tables["labels"], TABLES.tables["revocations"]
        query = (sa.select(revocations.c.label_id, labels.c.pattern, revocations.c.time, revocations.c.reason)
                 .join(labels, labels.c.label_id == revocations.c.label_id, isouter=True)
                 .order_by(revocations.c.time, revocations.c.label_id))
        with self._transaction("reading revocations") as db:
            return [Revocation(*row) for row in db.execute(query).all()]

    # ---- factories --------------------------------------------------------------------
    def push(self, registry_path: Path, factory: str) -> dict[str, int]:
        """Mirror every batch of a factory's registry file here, a batch per transaction; how
        many batches, and rows new, changed and removed (all 0 on a push that changes nothing)."""
        registry_path = Path(registry_path)
        if not factory.strip():
            raise PufError("a factory's name must not be empty")
        if not registry_path.is_file():
            raise PufError(f"no registry at {registry_path}")
        registry.Registry(registry_path).close()  # refuses a file that is not a registry of this schema
        local = sa.create_engine(f"sqlite:///file:{registry_path.resolve()}?mode=ro&uri=true")
        totals = {"batches": 0, "labels": 0, "new": 0, "changed": 0, "removed": 0}
        try:
            with local.connect() as source:
                batches = TABLES.tables["batches"]
                for (batch_id,) in source.execute(sa.select(batches.c.batch_id).order_by(batches.c.batch_id)):
                    rows = {name: _batch_rows(source, TABLES.tables[name], batch_id) for name in MIRRORED}
                    with self._transaction(f"pushing batch {batch_id} of {factory}") as db:
                        first = self._claim(db, batch_id, factory, rows["batches"][0]["layout"])
                        for name in MIRRORED:
                            for key, count in _mirror(db, TABLES.tables[name], batch_id, rows[name]).items():
                                totals[key] += count
                        if first:
                            db.execute(TABLES.tables["batch_origin"].insert(),
                                       {"batch_id": batch_id, "factory": factory, "pushed": time.time()})
                    totals["batches"] += 1
                    totals["labels"] += len(rows["labels"])
        except sa.exc.DBAPIError as error:
            raise PufError(f"cannot read the registry {registry_path}: {error.orig}") from None
        finally:
            local.dispose()
        return totals

    def _claim(self, db: sa.Connection, batch_id: str, factory: str, layout: str) -> bool:
        """Refuse a batch id another factory pushed first, or a batch whose layout changed;
        whether the batch is new here."""
        origin, batches = TABLES.tables["batch_origin"], TABLES.tables["batches"]
        owner = db.execute(sa.select(origin.c.factory).where(origin.c.batch_id == batch_id)).scalar()
        if owner is not None and owner != factory:
            raise PufError(f"batch {batch_id!r} was pushed by the factory {owner!r}; batch ids must be unique "
                           f"across the brand's factories, so {factory!r} cannot push its own")
        held = db.execute(sa.select(batches.c.layout).where(batches.c.batch_id == batch_id)).scalar()
        if held is not None and held != layout:
            raise PufError(f"the central registry holds batch {batch_id!r} with another layout")
        return owner is None

    # ---- devices ----------------------------------------------------------------------
    def set_device(self, device_id: str, name: str | None = None, lat: float | None = None,
                   lon: float | None = None) -> None:
        """Record where a device works (for the distance between two checks of one label)."""
        check_id("device", device_id)
        if lat is not None and not (-90 <= lat <= 90 and -180 <= (lon or 0) <= 180):
            raise PufError(f"a place is a latitude in -90..90 and a longitude in -180..180, got {lat}, {lon}")
        devices = TABLES.tables["devices"]
        values = {"name": name, "lat": lat, "lon": lon}
        with self._transaction(f"recording the device {device_id}") as db:
            if db.execute(sa.update(devices).where(devices.c.device_id == device_id).values(values)).rowcount == 0:
                db.execute(devices.insert(), {"device_id": device_id, **values})

    def add_device(self, device_id: str, public_key: Path, replace: bool = False) -> tuple[str, str | None]:
        """Register the public key a device signs its sync files with (`puf journal identity`
        on the device names both); (its key id, the key id it replaces or held already, else
        None). The same key again changes nothing; another key for a registered device is
        refused unless `replace` (a device given a new key: files signed by the old one are
        refused from then on)."""
        check_id("device", device_id)
        key = load_public_key(public_key)
        new = key_id(raw_public_bytes(key))
        devices, keys = TABLES.tables["devices"], TABLES.tables["device_keys"]
        with self._transaction(f"registering the device {device_id}") as db:
            held = db.execute(sa.select(keys.c.key_id).where(keys.c.device_id == device_id)).scalar()
            owner = db.execute(sa.select(keys.c.device_id).where(keys.c.key_id == new,
                                                                 keys.c.device_id != device_id)).scalar()
            if owner is not None:
                raise PufError(f"the key {new} ({public_key}) is registered for the device {owner}: each device "
                               "has a key of its own (puf journal identity on the device names its key file)")
            if held is not None and held != new and not replace:
                raise PufError(f"the device {device_id} is registered with key {held}, not {new} ({public_key}); "
                               "give --replace if the device was given a new key (its files signed by the old "
                               "one are then refused)")
            row = {"key_id": new, "public_key": public_pem(key).decode("ascii"), "registered": time.time()}
            if held is None:
                if db.execute(sa.select(devices.c.device_id).where(devices.c.device_id == device_id)).first() is None:
                    db.execute(devices.insert(), {"device_id": device_id})
                db.execute(keys.insert(), {"device_id": device_id, **row})
            elif held != new:
                db.execute(keys.update().where(keys.c.device_id == device_id).values(row))
        return new, held

    def import_journal(self, path: Path) -> tuple[int, int]:
        """`import_journals` of one file; (new, already here)."""
        return self.import_journals([path])[0]

    def import_journals(self, paths: Sequence[Path]) -> list[tuple[int, int]]:
        """Keep the checks of sync files not kept yet, all files in one transaction; (new,
        already here) for each file. A file that is bad, or not signed by the key registered
        for the device it claims, refuses the whole import: nothing of it is kept."""
        counts = []
        with self._transaction(f"importing {len(paths)} journal sync files") as db:
            for path in paths:
                synced = read_sync_file(path)
                check_signed(synced, _registered_key(db, synced.device_id, path), path)
                counts.append(_keep(db, synced))
        return counts

    # ---- clone alerts -----------------------------------------------------------------
    def alerts(self, window_hours: float = 24.0, min_km: float = 50.0, max_checks: int = 20) -> list[CloneAlert]:
        """Labels verified genuine on two devices at least `min_km` apart (or of unknown place)
        within `window_hours`, and labels checked more than `max_checks` times. Both are
        computed by the database: what comes back is one row per alert (`_closest_pairs`),
        never the checks themselves."""
        checks, devices = TABLES.tables["verifications"], TABLES.tables["devices"]
        with self._transaction("finding clone alerts") as db:
            places = {row.device_id: (row.lat, row.lon) for row in db.execute(sa.select(devices))}
            pairs = db.execute(_closest_pairs(db.dialect.name, window_hours * 3600)).all()
            often = db.execute(sa.select(checks.c.label_id, sa.func.count(), sa.func.min(checks.c.time),
                                         sa.func.max(checks.c.time))
                               .where(checks.c.label_id.is_not(None)).group_by(checks.c.label_id)
                               .having(sa.func.count() > max_checks).order_by(checks.c.label_id)).all()
        alerts = _two_places(pairs, places, min_km)
        alerts += [CloneAlert("checked_often", label, (), count, first, last) for label, count, first, last in often]
        return alerts


def _allow_every_verdict(db: sa.Connection) -> None:
    """Let the checks of a central registry made before the verdict "revoked" hold it: on
    PostgreSQL the check constraint is replaced; SQLite cannot change one, so the table is
    copied into one made as this version makes it."""
    allowed = f"verdict IN {VERDICTS}"
    if db.dialect.name == "postgresql":
        db.execute(sa.text("ALTER TABLE verifications DROP CONSTRAINT IF EXISTS verifications_verdict_check"))
        db.execute(sa.text(f"ALTER TABLE verifications ADD CONSTRAINT verifications_verdict_check CHECK ({allowed})"))
        return
    table = TABLES.tables["verifications"]
    columns = ", ".join(column.name for column in table.columns)
    db.execute(sa.text("ALTER TABLE verifications RENAME TO verifications_v2"))
    for index in table.indexes:
        db.execute(sa.text(f"DROP INDEX IF EXISTS {index.name}"))
    table.create(db)
    db.execute(sa.text(f"INSERT INTO verifications ({columns}) SELECT {columns} FROM verifications_v2"))
    db.execute(sa.text("DROP TABLE verifications_v2"))


def _registered_key(db: sa.Connection, device_id: str, path: Path):
    """The public key registered for `device_id`; a PufError when there is none."""
    from cryptography.hazmat.primitives import serialization

    keys = TABLES.tables["device_keys"]
    pem = db.execute(sa.select(keys.c.public_key).where(keys.c.device_id == device_id)).scalar()
    if pem is None:
        raise PufError(f"{path} is from the device {device_id}, whose key is not registered: refused, nothing "
                       f"imported. Register it once (puf journal identity, on the device, names both): "
                       f"puf registry add-device {device_id} KEY.pub")
    return serialization.load_pem_public_key(pem.encode("ascii"))


def _keep(db: sa.Connection, synced: SyncFile) -> tuple[int, int]:
    """Insert the checks of `synced` not held yet; (new, already here). On PostgreSQL through
    psycopg the checks are copied (COPY) into a table of this transaction and inserted from
    it in one statement, in place of a lookup and psycopg's row-by-row executemany (the
    import 1.4 to 1.9 times faster, tools/results/bench_alerts.md); elsewhere held ids are looked
    up and the rest inserted."""
    if db.dialect.name == "postgresql" and db.dialect.driver == "psycopg":
        copied = _copy_new(db, synced)
        return copied, len(synced.entries) - copied
    checks = TABLES.tables["verifications"]
    ids = [entry.id for entry in synced.entries]
    held = set(db.execute(sa.select(checks.c.id).where(
        checks.c.device_id == synced.device_id, checks.c.id.between(min(ids, default=0), max(ids, default=0))
    )).scalars())
    new = [{c: getattr(entry, c) for c in CSV_COLUMNS} for entry in synced.entries if entry.id not in held]
    if new:
        db.execute(checks.insert(), new)
    return len(new), len(synced.entries) - len(new)


def _copy_new(db: sa.Connection, synced: SyncFile) -> int:
    """COPY the checks of `synced` into `pg_temp.incoming_checks` (this session's own table,
    dropped at the transaction's end), then insert those not held yet (by device and id), in
    the import's transaction; how many were new."""
    columns = ", ".join(CSV_COLUMNS)
    db.execute(sa.text("CREATE TEMPORARY TABLE IF NOT EXISTS incoming_checks "
                       "(LIKE verifications INCLUDING DEFAULTS) ON COMMIT DROP"))
    db.execute(sa.text("TRUNCATE pg_temp.incoming_checks"))
    psycopg = db.connection.driver_connection
    assert psycopg is not None  # an open connection's: the transaction above runs on it
    with psycopg.cursor() as cursor, \
            cursor.copy(f"COPY pg_temp.incoming_checks ({columns}) FROM STDIN") as copy:
        for entry in synced.entries:
            copy.write_row([getattr(entry, c) for c in CSV_COLUMNS])
    return db.execute(sa.text(f"INSERT INTO verifications ({columns}) SELECT {columns} "
                              "FROM pg_temp.incoming_checks ON CONFLICT (device_id, id) DO NOTHING")).rowcount


def _batch_rows(db: sa.Connection, table: sa.Table, batch_id: str) -> list[dict]:
    return [dict(row._mapping) for row in db.execute(sa.select(table).where(table.c.batch_id == batch_id))]


def _mirror(db: sa.Connection, table: sa.Table, batch_id: str, rows: list[dict]) -> dict[str, int]:
    """Make the central rows of `batch_id` in `table` equal to `rows`, writing only differences."""
    keys = [column.name for column in table.primary_key.columns]
    wanted = {tuple(row[k] for k in keys): row for row in rows}
    held = {tuple(row[k] for k in keys): row for row in _batch_rows(db, table, batch_id)}
    new = [row for key, row in wanted.items() if key not in held]
    changed = [row for key, row in wanted.items() if key in held and held[key] != row]
    gone = [dict(zip(keys, key, strict=True)) for key in held if key not in wanted]
    match = sa.and_(*(table.c[k] == sa.bindparam(f"key_{k}") for k in keys))
    if new:
        db.execute(table.insert(), new)
    if changed:
        db.execute(table.update().where(match).values({c: sa.bindparam(f"new_{c}") for c in table.c.keys()}),
                   [{**{f"key_{k}": row[k] for k in keys}, **{f"new_{c}": v for c, v in row.items()}}
                    for row in changed])
    if gone:
        db.execute(table.delete().where(match), [{f"key_{k}": row[k] for k in keys} for row in gone])
    return {"new": len(new), "changed": len(changed), "removed": len(gone)}


def _seconds(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """A check's time (ISO 8601 UTC text, as the journal writes it) as seconds since 1970."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", sa.cast(column, sa.TIMESTAMP(timezone=True)))
    return (sa.func.julianday(column) - 2440587.5) * 86400.0


def _closest_pairs(dialect: str, window_s: float) -> sa.Select:
    """For each label and pair of devices, the closest two genuine checks in time, if within
    the window: (label, first device, its time, second device, its time), the devices in the
    order of their checks (at the same second, by device id), ordered by label and the pair.
    The genuine checks are joined with themselves on the label."""
    checks = TABLES.tables["verifications"]
    seen = (sa.select(checks.c.label_id, checks.c.device_id, checks.c.time,
                      _seconds(checks.c.time, dialect).label("at"))
            .where(checks.c.verdict == "genuine", checks.c.label_id.is_not(None)).cte("seen"))
    a, b = seen.alias("a"), seen.alias("b")
    gap = b.c.at - a.c.at
    low = sa.case((a.c.device_id < b.c.device_id, a.c.device_id), else_=b.c.device_id)
    high = sa.case((a.c.device_id < b.c.device_id, b.c.device_id), else_=a.c.device_id)
    pairs = (sa.select(a.c.label_id, a.c.device_id.label("d1"), a.c.time.label("first"),
                       b.c.device_id.label("d2"), b.c.time.label("last"), low.label("low"), high.label("high"),
                       sa.func.row_number().over(partition_by=(a.c.label_id, low, high),
                                                 order_by=(gap, a.c.time)).label("rank"))
             .where(a.c.label_id == b.c.label_id, a.c.device_id != b.c.device_id, gap <= window_s,
                    sa.or_(b.c.time > a.c.time, sa.and_(b.c.time == a.c.time, a.c.device_id < b.c.device_id)))
             .subquery("pairs"))
    return (sa.select(pairs.c.label_id, pairs.c.d1, pairs.c.first, pairs.c.d2, pairs.c.last)
            .where(pairs.c.rank == 1).order_by(pairs.c.label_id, pairs.c.low, pairs.c.high))


def _two_places(pairs: Sequence[Sequence[str]], places: dict, min_km: float) -> list[CloneAlert]:
    """The alerts of `_closest_pairs`'s rows whose devices are far enough apart (or of
    unknown place); each names the two devices in the order of their checks, each with its
    own time (first, last)."""
    alerts = []
    for label, d1, first, d2, last in pairs:
        km = _distance_km(places.get(d1), places.get(d2))
        if km is None or km >= min_km:
            alerts.append(CloneAlert("two_places", label, (d1, d2), 2, first, last, km))
    return alerts


def _distance_km(a: tuple | None, b: tuple | None) -> float | None:
    """Great-circle distance; None when either place is not known."""
    if a is None or b is None or None in (*a, *b):
        return None
    (lat1, lon1), (lat2, lon2) = (map(math.radians, a)), (map(math.radians, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))
