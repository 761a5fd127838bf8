"""`puf registry`: the central registry of a brand's factories and devices (`fabrication.central`).

    puf registry push REGISTRY.sqlite --factory NAME     a factory's batches and labels, idempotently
    puf registry add-device DEVICE_ID KEY.pub [--replace]   the key a device signs its journals with
    puf registry import FILE_OR_FOLDER...                devices' signed journal sync files (puf journal export),
                                                         all in one transaction
    puf registry import --journal PATH [--again]         an online device's journal database: what is new since
                                                         its last sync, as the same sync files, each imported
                                                         before the journal's sync mark moves past it
    puf registry device DEVICE_ID [--name N] [--at LAT,LON]   where a device works
    puf registry alerts [--window-hours H] [--min-km KM] [--max-checks N]   clone alerts
    puf registry revoke LABEL_ID... [--from FILE] [--reason TEXT]   labels stolen or recalled: region
                                                         exports (puf export-region --central) leave them out

Each reads ``--central URL`` (default: $PUF_CENTRAL), e.g.
postgresql+psycopg://puf:secret@db.example/puf. Only the standard library at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from edge_app.arguments import non_negative, non_negative_int, nonempty, positive, revocation_arguments
from edge_app.verbs import Verb

CENTRAL_ENV = "PUF_CENTRAL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--central", metavar="URL",
                        help=f"the central database's SQLAlchemy URL (default: ${CENTRAL_ENV})")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    commands = parser.add_subparsers(dest="registry_command", metavar="{push,add-device,import,device,alerts,revoke}",
                                     required=True)
    push = commands.add_parser("push", parents=[common], help="push a factory's batches and labels",
                               description="Mirror every batch of a factory's registry into the central one "
                                           "(a batch per transaction; pushing again changes nothing).",
                               epilog="example: puf registry push out/registry.sqlite --factory shenzhen")
    push.add_argument("registry", type=Path, help="the factory's registry.sqlite")
    push.add_argument("--factory", type=nonempty, required=True,
                      help="the factory's name (batch ids are unique across factories)")
    added = commands.add_parser("add-device", parents=[common], help="register a device's public key",
                                description="Register the public key a device signs its journal sync files with "
                                            "(on the device, `puf journal identity` prints its id and key file). "
                                            "Registering the same key again changes nothing.",
                                epilog="example: puf registry add-device dev-3f2a9c1e0b7d4a55 dev-3f2a9c1e0b7d4a55.pub")
    added.add_argument("device_id")
    added.add_argument("public_key", type=Path, metavar="KEY.pub", help="the device's public key (PEM)")
    added.add_argument("--replace", action="store_true",
                       help="the device was given a new key: replace the registered one (files signed by the old "
                            "key are refused from then on)")
    imported = commands.add_parser("import", parents=[common], help="import devices' journal sync files",
                                   description="Keep the checks of journal sync files (puf journal export FOLDER); "
                                               "each check once, so importing again changes nothing. Each file "
                                               "must be signed by the key registered for its device (puf "
                                               "registry add-device). All the files are imported in one "
                                               "transaction: one bad, forged or altered file, and nothing is kept. "
                                               "Or, on a device that is online, its journal database (--journal): "
                                               "the checks new since its last sync, through the same signed files; "
                                               "the sync mark moves only past what the registry took, so a failed "
                                               "import is sent again next time.",
                                   epilog="examples:\n  puf registry import /media/usb\n"
                                          "  puf registry import --journal ~/.local/share/puf/journal.sqlite",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    imported.add_argument("paths", nargs="*", type=Path,
                          help="sync files, or folders holding them (puf-journal-*.json)")
    imported.add_argument("--journal", type=Path, metavar="PATH",
                          help="instead of files: a device's journal database (journal.sqlite)")
    imported.add_argument("--again", action="store_true",
                          help="with --journal: every check, not only those new since the last sync")
    device = commands.add_parser("device", parents=[common], help="record where a device works",
                                 epilog="example: puf registry device dev-3f2a9c1e0b7d4a55 --name Berlin-1 "
                                        "--at 52.52,13.40")
    device.add_argument("device_id", type=nonempty)
    device.add_argument("--name")
    device.add_argument("--at", metavar="LAT,LON", help="the device's place, in degrees")
    alerts = commands.add_parser("alerts", parents=[common], help="clone alerts",
                                 description="Labels verified genuine on two devices far apart within a time "
                                             "window, and labels checked more often than a threshold.",
                                 epilog="example: puf registry alerts --window-hours 48 --min-km 100 --json")
    alerts.add_argument("--window-hours", type=positive, default=24.0, help="default 24")
    alerts.add_argument("--min-km", type=non_negative, default=50.0,
                        help="devices at least this far apart (default 50; a device of unknown place counts)")
    alerts.add_argument("--max-checks", type=non_negative_int, default=20,
                        help="more checks of one label than this (default 20)")
    revoked = commands.add_parser("revoke", parents=[common], help="revoke labels (stolen, recalled)",
                                  description="Record labels revoked; puf export-region --central then leaves "
                                              "them out of a region's shards and lists them in its signed "
                                              "revocation list, so devices say revoked. A label must have been "
                                              "pushed; revoking one again changes nothing.",
                                  epilog="example: puf registry revoke B0001-0003-07 --reason \"stolen shipment\"")
    revocation_arguments(revoked)


def central_url(given: str | None) -> str:
    """The central registry's URL: `given` (--central), else $PUF_CENTRAL; a PufError when
    neither names one."""
    from edge_app.errors import PufError

    url = given or os.environ.get(CENTRAL_ENV)
    if not url:
        raise PufError(f"give the central registry's URL with --central or ${CENTRAL_ENV}")
    return url


def run(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError
    from fabrication.central import CentralRegistry

    with CentralRegistry(central_url(args.central)) as central:
        if args.registry_command == "push":
            pushed = central.push(args.registry, args.factory)
            result: object = pushed
            text = (f"pushed {pushed['batches']} batches ({pushed['labels']} labels) of {args.factory}: "
                    f"{pushed['new']} rows new, {pushed['changed']} changed, {pushed['removed']} removed")
        elif args.registry_command == "add-device":
            registered, held = central.add_device(args.device_id, args.public_key, args.replace)
            replaced = held if held != registered else None
            result = {"device_id": args.device_id, "key_id": registered, "replaced": replaced}
            text = (f"device {args.device_id} already has key {registered}" if held == registered else
                    f"registered device {args.device_id} with key {registered}"
                    + (f" (replacing {replaced})" if replaced else ""))
        elif args.registry_command == "import":
            result, text = _import(central, args)
        elif args.registry_command == "device":
            lat, lon = _place(args.at) if args.at else (None, None)
            central.set_device(args.device_id, args.name, lat, lon)
            result = {"device_id": args.device_id, "name": args.name, "lat": lat, "lon": lon}
            text = f"recorded the device {args.device_id}"
        elif args.registry_command == "revoke":
            from edge_app.revocations import label_ids

            new, already = central.revoke(label_ids(args.label_ids, args.from_file), args.reason)
            result = {"revoked": new, "already_revoked": already}
            text = "\n".join([f"revoked {i}" for i in new] + [f"already revoked {i}: unchanged" for i in already])
        else:
            if args.window_hours <= 0 or args.min_km < 0 or args.max_checks < 1:
                raise PufError("--window-hours must be above 0, --min-km at least 0, --max-checks at least 1")
            found = central.alerts(args.window_hours, args.min_km, args.max_checks)
            result = [asdict(alert) for alert in found]
            text = "\n".join(_alert_text(alert) for alert in found) or "no clone alerts"
    print(json.dumps(result, indent=1) if args.json else text)
    return 0


def _import(central, args: argparse.Namespace) -> tuple[object, str]:
    """`registry import`: sync files given, or a journal database's new checks (--journal)."""
    from edge_app.errors import PufError

    if (args.journal is None) == (not args.paths):
        raise PufError("give sync files or folders, or --journal PATH (a device's journal database): one of the two")
    if args.journal is None:
        if args.again:
            raise PufError("--again is for --journal: files given are imported whole")
        files = _sync_files(args.paths)
        result = {str(path): dict(zip(("new", "known"), counts, strict=True))
                  for path, counts in zip(files, central.import_journals(files), strict=True)}
        return result, "\n".join(f"{path}: {r['new']} new checks, {r['known']} already here"
                                 for path, r in result.items())
    new, known, sent = _import_new_checks(central, args.journal, args.again)
    text = (f"pushed {new} new checks to the central registry ({known} it already had)" if sent
            else f"nothing new since the last sync of {args.journal}")
    return {"journal": str(args.journal), "new": new, "known": known, "files": sent}, text


def _import_new_checks(central, path: Path, again: bool) -> tuple[int, int, int]:
    """The checks of the journal at `path` new since its last sync (all with `again`), into the
    central registry through the sync files a stick carries (written to a temporary folder,
    each imported before the journal's mark moves past it); (new, known, files)."""
    from edge_app.journal import Journal
    from edge_app.journal_sync import export_new

    taken: list[tuple[int, int]] = []
    with Journal(path, create=False) as journal, tempfile.TemporaryDirectory(prefix="puf-journal-") as folder:
        export_new(journal, Path(folder), again=again, deliver=lambda file: taken.append(central.import_journal(file)))
    return sum(t[0] for t in taken), sum(t[1] for t in taken), len(taken)


def _sync_files(paths: list[Path]) -> list[Path]:
    from edge_app.errors import PufError

    files: dict[Path, None] = {}  # each file once, in the order given
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("puf-journal-*.json"))
            if not found:
                raise PufError(f"no journal sync files (puf-journal-*.json) in {path}")
            files.update(dict.fromkeys(found))
        else:
            files[path] = None
    return list(files)


def _place(text: str) -> tuple[float, float]:
    from edge_app.errors import PufError

    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise PufError(f"--at must be LAT,LON in degrees like 52.52,13.40, got {text!r}") from None
    return lat, lon


def _alert_text(alert) -> str:
    if alert.kind == "two_places":
        apart = "place unknown" if alert.distance_km is None else f"{alert.distance_km:.0f} km apart"
        return (f"CLONE? {alert.label_id} genuine on {alert.devices[0]} at {alert.first} and on "
                f"{alert.devices[1]} at {alert.last} ({apart})")
    return f"CHECKED OFTEN {alert.label_id}: {alert.checks} checks from {alert.first} to {alert.last}"


verb = Verb(
    "registry",
    "The central registry of a brand's factories and devices: push a factory's batches, register "
    "devices' keys, import their signed journals, see clone alerts.",
    "  puf registry push out/registry.sqlite --factory shenzhen --central postgresql+psycopg://puf@db/puf\n"
    "  puf registry add-device dev-3f2a9c1e journal.pub   # once a device: the key its journals are signed with\n"
    "  puf registry import /media/usb             # journals a device exported (puf journal export)\n"
    "  puf registry import --journal journal.sqlite   # an online device's journal, what is new\n"
    "  puf registry device dev-3f2a9c1e --at 52.52,13.40   # where a device works\n"
    "  puf registry alerts --json                 # clone alerts ($PUF_CENTRAL names the database)\n"
    "  puf registry revoke B0001-0003-07 --reason recalled   # region exports leave it out, devices say revoked",
    add_arguments,
    run,
    extras=("central",),
    rank=33,
)
