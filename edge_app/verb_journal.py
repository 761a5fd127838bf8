"""`puf journal`: show or export the device's journal of verifications.

    puf journal list [--limit N] [--json]        the latest checks, newest first
    puf journal identity [--json]               the device's id and public key, to register centrally
    puf journal export OUT.csv|- [--since DATE]  CSV for people (a file written atomically, or stdout)
    puf journal export FOLDER [--again]         what is new since the last sync, as signed JSON sync files
                                                for the central registry (`edge_app.journal_sync`), e.g.
                                                to a USB stick (when online, the factory side's `puf registry
                                                import --journal PATH` takes them straight from the journal)

Each reads ``--journal PATH`` (default: the device's, `edge_app.device_store`). Only the
standard library at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from edge_app.arguments import output_path, positive_int
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--journal", type=Path, metavar="PATH",
                        help="the journal file (default: journal.sqlite in $PUF_HOME, else ~/.local/share/puf)")
    commands = parser.add_subparsers(dest="journal_command", metavar="{list,identity,export}", required=True)
    shown = commands.add_parser("list", parents=[common], help="the latest checks, newest first",
                                description="The latest checks, newest first.",
                                epilog="example: puf journal list --limit 20", formatter_class=_Format)
    shown.add_argument("--limit", type=positive_int, default=50, help="how many (default 50)")
    shown.add_argument("--json", action="store_true", help="print them as JSON")
    identity = commands.add_parser("identity", parents=[common], help="the device's id and public key",
                                   description="The device's id and the public key it signs its journal sync "
                                               "files with (both made now if the device has none yet: at "
                                               "provisioning), and the command that "
                                               "registers them with the central registry, once.",
                                   epilog="example: puf journal identity", formatter_class=_Format)
    identity.add_argument("--json", action="store_true", help="print them as JSON")
    export = commands.add_parser("export", parents=[common], help="checks as CSV, or signed sync files to a folder",
                                 description="Every check as CSV (header row; oldest first); or, given an "
                                             "existing folder, the checks new since the last sync as JSON sync "
                                             "files signed by the device's key, for the central registry (puf "
                                             "registry import).",
                                 epilog="examples:\n  puf journal export checks.csv\n"
                                        "  puf journal export - --since 2026-11-01\n"
                                        "  puf journal export /media/usb    # new since the last sync, signed JSON",
                                 formatter_class=_Format)
    export.add_argument("out", type=export_target,
                        help="a .csv file to write (replaced atomically), - for stdout, or an existing folder "
                                    "for sync files")
    export.add_argument("--again", action="store_true",
                        help="to a folder: every check, not only those new since the last sync")
    export.add_argument("--since", metavar="DATE",
                        help="only checks from this date or time on, UTC (2026-11-01 or 2026-11-01T08:00)")


def export_target(text: str) -> str:
    """`journal export OUT`: - (stdout), else a file or folder to write (`output_path`)."""
    return text if text == "-" else str(output_path(text))


class _Format(argparse.RawDescriptionHelpFormatter):
    pass


def run(args: argparse.Namespace) -> int:
    from edge_app.device_store import JOURNAL, device_home
    from edge_app.journal import Journal

    path = args.journal or device_home() / JOURNAL
    if args.journal_command == "list":
        with Journal(path, create=False) as journal:
            entries = journal.recent(args.limit)
            total = len(journal)
        if args.json:
            from dataclasses import asdict

            print(json.dumps([asdict(entry) for entry in entries], indent=1))
        else:
            print(table(entries, total, path))
        return 0
    if args.journal_command == "identity":
        return show_identity(path, args.json)
    since = parse_since(args.since) if args.since else None
    if Path(args.out).is_dir():
        return sync(path, Path(args.out), args)
    if args.out != "-":
        check_csv_path(Path(args.out))
    with Journal(path, create=False) as journal:
        if args.out == "-":
            journal.export_csv(sys.stdout, since)
            return 0
        written = export_atomic(journal, Path(args.out), since)
    print(f"wrote {written} checks to {args.out}", file=sys.stderr)
    return 0


def check_csv_path(out: Path) -> None:
    """Refuse an OUT that is not a folder and was not meant as a CSV file: a folder that is
    not there (a USB stick not mounted) must not become a file of that name."""
    from edge_app.errors import PufError

    if str(out).endswith("/") or out.suffix.lower() != ".csv":
        raise PufError(f"{out} is not a folder (is the USB stick mounted?) and not a .csv file: give an existing "
                       "folder for sync files, or a name ending in .csv for CSV")
    if not out.parent.is_dir():
        raise PufError(f"cannot write {out}: the folder {out.parent} does not exist (is the USB stick mounted?)")


def show_identity(path: Path, as_json: bool) -> int:
    """The device's id, its public key file and key id, and how to register them (at
    provisioning, before the first check: the journal and the key are made now)."""
    from edge_app.device_key import device_key, device_key_id, key_paths
    from edge_app.journal import Journal

    with Journal(path) as journal:
        device_id = journal.device_id
    key_id = device_key_id(device_key(path))
    public = key_paths(path)[1]
    if as_json:
        print(json.dumps({"device_id": device_id, "public_key": str(public), "key_id": key_id}, indent=1))
    else:
        print(f"device     {device_id}\npublic key {public} (key id {key_id})\n"
              f"register it once, at the central registry: puf registry add-device {device_id} {public}")
    return 0


def sync(path: Path, folder: Path, args: argparse.Namespace) -> int:
    from edge_app.errors import PufError
    from edge_app.journal import Journal
    from edge_app.journal_sync import export_new

    if args.since:
        raise PufError("--since is for CSV; a folder receives what is new since the last sync (--again: all)")
    with Journal(path, create=False) as journal:
        written = export_new(journal, folder, again=args.again)
        device_id = journal.device_id
    for file, count in written:
        print(f"wrote {count} checks to {file}, signed by device {device_id}", file=sys.stderr)
    if not written:
        print(f"nothing new since the last sync of {path}", file=sys.stderr)
    return 0


def parse_since(text: str) -> datetime:
    from edge_app.errors import PufError

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PufError(f"--since must be a date or time like 2026-11-01 or 2026-11-01T08:00, got {text!r}") from None


def export_atomic(journal, out: Path, since: datetime | None) -> int:
    """Export to a temporary file beside `out`, then rename it over `out`."""
    from edge_app.atomic_write import replacing
    from edge_app.errors import PufError

    try:
        with replacing(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            written = journal.export_csv(f, since)
    except OSError as error:
        raise PufError(f"cannot write {out}: {error.strerror or error}") from None
    return written


def table(entries: list, total: int, path: Path) -> str:
    """The entries as a table for people."""
    if not entries:
        return f"the journal {path} holds no checks yet"
    rows = [("id", "time (UTC)", "verdict", "label", "score", "pattern", "bundle", "reason")]
    for e in entries:
        rows.append((str(e.id), e.time.replace("T", " ").rstrip("Z"), e.verdict.upper(), e.label_id or "-",
                     "-" if e.score is None else f"{e.score:.3f}", e.pattern or "-", e.bundle_version or "-",
                     e.reason if len(e.reason) <= 60 else e.reason[:57] + "..."))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]
    lines.append(f"{len(entries)} of {total} checks, newest first ({path})")
    return "\n".join(lines)


verb = Verb(
    "journal",
    "Show or export the device's journal of verifications (CSV for people, signed JSON sync files for the "
    "central registry).",
    "  puf journal list                           # the latest checks, newest first\n"
    "  puf journal export checks.csv              # every check, as CSV\n"
    "  puf journal export /media/usb              # new since the last sync, signed JSON for puf registry import\n"
    "  puf journal identity                       # the device's id and key, to register once",
    add_arguments,
    run,
    rank=32,
)
