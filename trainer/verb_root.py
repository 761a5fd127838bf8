"""`puf root`: the root list of the keys devices may trust (`edge_app.trust_root`), made and
signed offline with the root keys, and attached to a signing key so that its bundles carry it.

    puf keygen keys/root1 ; puf keygen keys/root2            # root keys: kept offline
    puf root init root.json --root keys/root1.pub --root keys/root2.pub --threshold 2 \\
        --signer keys/factory.pub
    puf root sign root.json --key keys/root1.key --key keys/root2.key
    puf root attach root.json --key keys/factory.key         # keys/factory.key.root.json
    puf root edit root.json --add-signer keys/factory2.pub --remove-signer keys/factory.pub

An edit of a signed list raises its version and drops its signatures: it must be signed again.
Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.verbs import Verb, print_report

DEFAULT_VALID_DAYS = 365


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("list", type=Path, metavar="LIST", help="the root list (a JSON file)")
    common.add_argument("--json", action="store_true", help="print the report as JSON")
    init = actions.add_parser("init", parents=[common], help="make a new, unsigned root list (version 1)")
    init.add_argument("--root", type=Path, action="append", required=True, metavar="ROOT.pub",
                      help="a root key (repeat for k of n)")
    init.add_argument("--signer", type=Path, action="append", required=True, metavar="KEY.pub",
                      help="a signing key devices may trust (repeat)")
    edit = actions.add_parser("edit", parents=[common], help="change a root list (a signed one gets a new version)")
    for option, what in (("--add-signer", "a signing key to trust"), ("--add-root", "a root key to add")):
        edit.add_argument(option, type=Path, action="append", default=[], metavar="KEY.pub", help=what)
    for option, what in (("--remove-signer", "a signing key to drop (a leaked one)"),
                         ("--remove-root", "a root key to drop")):
        edit.add_argument(option, action="append", default=[], metavar="KEY.pub|ID", help=what)
    for sub, default in ((init, 1), (edit, None)):
        sub.add_argument("--threshold", type=int, default=default,
                         help="how many root keys must sign" + (" (default: 1)" if default else " (default: kept)"))
        sub.add_argument("--valid-days", type=float, default=DEFAULT_VALID_DAYS,
                         help=f"the list expires this many days from now (default: {DEFAULT_VALID_DAYS})")
    sign = actions.add_parser("sign", parents=[common], help="sign a root list with root keys")
    sign.add_argument("--key", type=Path, action="append", required=True, metavar="ROOT.key",
                      help="a root's private key (repeat for k of n; for a new root list, the old roots sign too)")
    attach = actions.add_parser("attach", parents=[common],
                                help="check a signed list and keep it beside a signing key: its bundles carry it")
    attach.add_argument("--key", type=Path, required=True, metavar="KEY.key", help="the signing key")
    actions.add_parser("show", parents=[common], help="show a root list and its signatures")


def run(args: argparse.Namespace) -> int:
    from edge_app.atomic_write import write_atomic
    from edge_app.trust_root import RootList

    path = args.list
    if args.action == "init":
        document = init(args)
    elif args.action == "attach":
        return print_report(attach(path, args.key), args.json, describe)
    elif args.action == "show":
        return print_report(report(RootList.read(path)), args.json, describe)
    else:
        document = edit(args) if args.action == "edit" else sign(args)
    write_atomic(path, _text(document))
    return print_report(report(RootList.read(path)), args.json, describe)


def _text(document: dict) -> str:
    import json

    return json.dumps(document, indent=1) + "\n"


def init(args: argparse.Namespace) -> dict:
    from edge_app.errors import PufError
    from edge_app.signing import load_public_key
    from trainer.keys import new_root_list

    if args.list.exists():
        raise PufError(f"{args.list} exists: a root list is changed with puf root edit, never made over")
    return new_root_list([load_public_key(p) for p in args.root], [load_public_key(p) for p in args.signer],
                         args.threshold, args.valid_days)


def _key_ids(values: list) -> set[str]:
    """Key ids given as ids or as ``.pub`` files."""
    from edge_app.signing import key_id, load_public_key, raw_public_bytes

    return {key_id(raw_public_bytes(load_public_key(Path(v)))) if Path(v).is_file() else v for v in values}


def edit(args: argparse.Namespace) -> dict:
    from edge_app.errors import PufError
    from edge_app.signing import load_public_key
    from edge_app.trust_root import RootList
    from trainer.keys import new_root_list

    old = RootList.read(args.list)
    roots, keys = dict(old.roots), dict(old.keys)
    for kept, added, removed, what in ((roots, args.add_root, args.remove_root, "root"),
                                       (keys, args.add_signer, args.remove_signer, "signing key")):
        missing = sorted(_key_ids(removed) - set(kept))
        if missing:
            raise PufError(f"{args.list} lists no {what} {', '.join(missing)}: nothing was changed")
        for identity in _key_ids(removed):
            del kept[identity]
        for public in added:
            kept[Path(public).name] = load_public_key(public)  # any name: new_root_list names keys by id
    version = old.version + 1 if old.signatures else old.version
    threshold = args.threshold if args.threshold is not None else old.threshold
    return new_root_list(list(roots.values()), list(keys.values()), threshold, args.valid_days, version)


def sign(args: argparse.Namespace) -> dict:
    from edge_app.json_files import read_json
    from trainer.keys import load_private_key, sign_root_list

    document = read_json(args.list, "root list")
    for key in args.key:
        document = sign_root_list(document, load_private_key(key), str(args.list))  # type: ignore[arg-type]
    return document  # type: ignore[return-value]


def attach(path: Path, key: Path) -> dict:
    from edge_app.atomic_write import write_atomic
    from trainer.keys import check_attachable, load_private_key, root_list_beside

    signer = load_private_key(key)
    listed = check_attachable(path, signer)
    write_atomic(root_list_beside(signer), _text(listed.document))
    return {**report(listed), "attached": str(root_list_beside(signer))}


def report(listed) -> dict:
    signed = listed.signed_by(listed.roots, "the root list")
    return {"version": listed.version, "expires": listed.document["expires"], "threshold": listed.threshold,
            "roots": sorted(listed.roots), "signing_keys": sorted(listed.keys), "signed_by_roots": sorted(signed),
            "other_signatures": sorted(s["key_id"] for s in listed.signatures if s["key_id"] not in signed),
            "complete": len(signed) >= listed.threshold}


def describe(report: dict) -> str:
    state = "signed by enough roots" if report["complete"] else "NOT yet signed by enough roots"
    text = (f"root list version {report['version']}, expires {report['expires']}: {report['threshold']} of "
            f"{len(report['roots'])} roots must sign ({', '.join(report['roots'])}); signed by "
            f"{', '.join(report['signed_by_roots']) or 'none'}: {state}\n"
            f"signing keys devices may trust: {', '.join(report['signing_keys'])}")
    if report["other_signatures"]:
        text += f"\nsignatures of keys not among its roots (old roots): {', '.join(report['other_signatures'])}"
    if report.get("attached"):
        text += f"\nattached: bundles signed with the key carry {report['attached']}"
    return text


verb = Verb(
    "root",
    "Make and sign the root list of the signing keys devices may trust; attach it to a signing key.",
    "  puf root init root.json --root keys/root1.pub --root keys/root2.pub --threshold 2 --signer keys/factory.pub\n"
    "  puf root sign root.json --key keys/root1.key --key keys/root2.key\n"
    "  puf root attach root.json --key keys/factory.key\n"
    "  puf root edit root.json --add-signer keys/factory2.pub --remove-signer keys/factory.pub\n"
    "  puf root show root.json",
    add_arguments,
    run,
    extras=("device",),
    rank=23,
)
