"""A device's journal carried home: the sync file, written on the device, read by the central registry.

`export_new` writes what the journal holds beyond its last sync into a folder (a USB stick),
as JSON files of at most `ROWS_PER_FILE` checks named by device and entry ids, and only then
moves the journal's sync mark on: a stick pulled out mid-write costs nothing, the next
export writes the same checks again, and the import keeps each check once. Every file is
signed by the device's own key (`edge_app.device_key`; the signature covers
`edge_app.signing.canonical_bytes` of the file), so the central registry, which holds each
device's public key, can refuse a file the device did not write or that was altered since.
`read_sync_file` is the other end: a file from a stick is untrusted, so its size, its shape
and every value's type and range (text as UTF-8, ids in their grammar) are checked before
anything is kept, and a bad file is refused whole, saying where it is wrong; `check_signed`
then holds its signature against the device's registered key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_app.atomic_write import replacing
from edge_app.device_key import device_key
from edge_app.errors import PufError
from edge_app.ids import check_id
from edge_app.journal import CSV_COLUMNS, VERDICTS, Journal, JournalEntry
from edge_app.layout import parse_label_id
from edge_app.signing import ALGORITHM, key_id, raw_public_bytes, signature_for, signature_matches

FORMAT = "puf-journal-sync"
VERSION = 2  # 2: signed by the device's key
ROWS_PER_FILE = 50_000
MAX_FILE_BYTES = 64 * 1024 * 1024  # 50,000 checks take about 15 MB
MAX_TEXT = 4096  # characters in any one text value
SYNCED_TO = "synced_to"  # the journal_meta key: the last entry id exported
_TEXT = ("reason", "bundle_version", "source")
_OPTIONAL_TEXT = ("label_id", "pattern")
_OPTIONAL_NUMBER = ("score", "total_ms")
KEY_ID = re.compile(r"[0-9a-f]{16}")  # `edge_app.signing.key_id`
# `edge_app.journal.TIME_FORMAT` as the journal writes it: ASCII digits, each field zero-padded (stricter
# than strptime, which takes "2026-1-5T3:0:0Z", lower-case t and z, and any script's digits)
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z", re.ASCII)


@dataclass(frozen=True)
class SyncFile:
    device_id: str
    entries: list[JournalEntry]
    document: dict  # the file as read: what its signature covers


def check_device_id(device_id: object, what: str = "device_id") -> str:
    """`device_id` if it is in the grammar of device ids (`edge_app.ids`); a PufError naming `what` otherwise."""
    try:
        return check_id("device", device_id)
    except PufError as error:
        raise PufError(f"{what}: {error}") from None


def check_signed(synced: SyncFile, public_key, where: object) -> None:
    """Refuse a sync file not signed by `public_key` (the key registered for the device it
    claims), or altered since it was signed."""
    registered = key_id(raw_public_bytes(public_key))
    signer = synced.document["signature"]["key_id"]
    if signer != registered:
        raise PufError(f"{where} claims to be from device {synced.device_id} but is signed by key {signer}, not "
                       f"that device's registered key {registered}: refused, nothing imported (a forged file, "
                       f"or the device has a new key: puf registry add-device {synced.device_id} KEY.pub --replace)")
    if not signature_matches(synced.document, public_key):
        raise PufError(f"{where}: the signature of device {synced.device_id} does not match the file's contents "
                       "(altered after the device signed it): refused, nothing imported")


def export_new(journal: Journal, folder: Path, again: bool = False,
               deliver: Callable[[Path], object] | None = None) -> list[tuple[Path, int]]:
    """Write the checks after the journal's sync mark (all of them with `again`) into
    `folder`, each file signed by the device's key (made now if it has none); the files
    written and how many checks each holds (none when nothing is new). `deliver` (when
    online: the central registry's import) takes each file before the mark moves past it,
    so checks it failed to take are sent again next time."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PufError(f"{folder} is not a folder (give the USB stick's folder to export into)")
    key = device_key(journal.path)
    after = 0 if again else int(journal.meta(SYNCED_TO) or 0)
    written = []
    while entries := journal.after(after, ROWS_PER_FILE):
        path = folder / f"puf-journal-{journal.device_id}-{entries[0].id:010d}-{entries[-1].id:010d}.json"
        document = {"format": FORMAT, "version": VERSION, "device_id": journal.device_id,
                    "entries": [[getattr(e, c) for c in CSV_COLUMNS] for e in entries]}
        document["signature"] = signature_for(document, key)
        _write_durably(path, document)
        if deliver is not None:
            deliver(path)
        after = entries[-1].id
        journal.set_meta(SYNCED_TO, str(max(after, int(journal.meta(SYNCED_TO) or 0))))
        written.append((path, len(entries)))
    return written


def _write_durably(path: Path, data: dict) -> None:
    """Through a temporary file, flushed to the stick before it is renamed into place."""
    try:
        with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
    except OSError as error:
        raise PufError(f"cannot write {path} ({error.strerror or error}); the journal's sync mark was not "
                       "moved: export again once the folder is writable") from None


def read_sync_file(path: Path) -> SyncFile:
    """The checks in a sync file, every value checked; a PufError naming the file and the
    first thing wrong otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PufError(f"{path} is {size / 1e6:.0f} MB, more than a journal sync file can be "
                           f"({MAX_FILE_BYTES / 1e6:.0f} MB): refused, nothing imported")
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_FILE_BYTES + 1), parse_constant=_no_constant)
    except FileNotFoundError:
        raise PufError(f"no journal sync file at {path}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise PufError(f"{path} is not a journal sync file ({error}): refused, nothing imported") from None
    try:
        return _parse(data)
    except PufError as error:
        raise PufError(f"{path}: {error}: refused, nothing imported") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON knows")


def _parse(data: object) -> SyncFile:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PufError(f"not a journal sync file (no \"format\": \"{FORMAT}\")")
    if data.get("version") == 1:
        raise PufError("an unsigned sync file (version 1, from an older puf): update puf on the device and "
                       "export again with --again")
    if data.get("version") != VERSION:
        raise PufError(f"a sync file of version {data.get('version')!r}; this puf reads version {VERSION}")
    device_id = check_device_id(data.get("device_id"))
    signature = data.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM \
            or not isinstance(signature.get("key_id"), str) or not KEY_ID.fullmatch(signature["key_id"]) \
            or not isinstance(signature.get("value"), str):
        raise PufError(f"not signed: a sync file carries its device's {ALGORITHM} signature "
                       "({\"algorithm\", \"key_id\", \"value\"})")
    rows = data.get("entries")
    if not isinstance(rows, list):
        raise PufError("\"entries\" must be a list")
    if len(rows) > ROWS_PER_FILE:
        raise PufError(f"{len(rows)} entries, more than the {ROWS_PER_FILE} a sync file holds")
    entries = []
    ids = set()
    for i, row in enumerate(rows):
        try:
            entry = _entry(row)
        except PufError as error:
            raise PufError(f"entry {i}: {error}") from None
        if entry.device_id != device_id:
            raise PufError(f"entry {i} is of device {entry.device_id!r}, the file of {device_id!r}")
        if entry.id in ids:
            raise PufError(f"entry {i} repeats the id {entry.id}")
        ids.add(entry.id)
        entries.append(entry)
    return SyncFile(device_id, entries, data)


def _entry(row: object) -> JournalEntry:
    if not isinstance(row, list) or len(row) != len(CSV_COLUMNS):
        raise PufError(f"must be a list of {len(CSV_COLUMNS)} values ({', '.join(CSV_COLUMNS)})")
    values = dict(zip(CSV_COLUMNS, row, strict=True))
    if type(values["id"]) is not int or not 0 < values["id"] < 2**63:
        raise PufError(f"id must be a positive whole number, got {values['id']!r}")
    check_time(_text(values["time"], "time"))
    if values["verdict"] not in VERDICTS:
        raise PufError(f"verdict must be one of {', '.join(VERDICTS)}, got {values['verdict']!r}")
    for key in _TEXT:
        _text(values[key], key, empty=True)
    for key in _OPTIONAL_TEXT:
        if values[key] is not None:
            _text(values[key], key)
    if values["label_id"] is not None:
        _label_id(values["label_id"])
    check_device_id(values["device_id"])
    for key in (*_OPTIONAL_NUMBER, "threshold"):
        if values[key] is not None or key == "threshold":
            values[key] = _number(values[key], key)
    return JournalEntry(**values)


def check_time(time: str) -> None:
    """Refuse a time not written as the journal writes them (`_TIME`), or not a real moment
    (2026-02-30, 24:00, a 60th second): a regex and the date's own range checks, the import's
    share of every entry kept small."""
    match = _TIME.fullmatch(time)
    try:
        if match is None:
            raise ValueError(time)
        year, month, day, hour, minute, second = map(int, match.groups())
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise PufError(f"time must be UTC like 2026-11-25T07:31:02Z, got {time[:40]!r}") from None


def _text(value: object, key: str, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or not (value or empty):
        raise PufError(f"{key} must be {'a' if empty else 'a non-empty'} text of at most {MAX_TEXT} characters, "
                       f"got {str(value)[:40]!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PufError(f"{key} is not valid text (a lone surrogate, {str(value)[:40]!r}); a device never "
                       "writes one") from None
    if "\x00" in value:
        raise PufError(f"{key} holds a NUL character, which no text field may hold")
    return value


def _label_id(value: str) -> None:
    """A label id exactly as `edge_app.layout` writes them (BATCH-FFFF-SS, ASCII digits, no
    line break after)."""
    batch, field, slot = parse_label_id(value)
    if value != f"{batch}-{field:04d}-{slot:02d}":
        raise PufError(f"{value!r} is not a label id (BATCH-FFFF-SS)")


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PufError(f"{key} must be a finite number, got {str(value)[:40]!r}")
    return float(value)
