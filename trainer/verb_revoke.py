"""`puf revoke`: revoke labels (stolen, recalled) in a bundle: out of its shards, onto its signed
revocation list, so a device says "revoked" for them (`trainer.revoke`).

Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import nonempty_path, revocation_arguments
from edge_app.verbs import Verb, print_report
from trainer.verb_enroll import removal_arguments, trusted_keys_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    revocation_arguments(parser)
    parser.add_argument("--bundle", type=nonempty_path, required=True, help="the bundle folder; updated in place")
    parser.add_argument("--key", type=Path, required=True, help="private key to sign the new version with")
    trusted_keys_argument(parser)
    removal_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError
    from edge_app.ids import check_id
    from edge_app.revocations import check_reason, label_ids
    from trainer.keys import load_private_key
    from trainer.revoke import describe, revoke

    reason = check_reason(args.reason)
    ids = [check_id("label", label_id) for label_id in label_ids(args.label_ids, args.from_file)]
    if not ids:  # every id checked before the key is read: a refusal costs nothing
        raise PufError("give the labels to revoke (LABEL_ID..., or --from FILE)")
    report = revoke(args.bundle, ids, load_private_key(args.key), reason, args.trusted_keys, args.memory_mb,
                    args.accept_approximate_scores)
    return print_report(report, args.json, describe)


verb = Verb(
    "revoke",
    "Revoke labels (stolen, recalled): out of a bundle's shards and onto its signed revocation list.",
    "  puf revoke B0001-0003-07 --bundle bundles/b1 --key keys/factory.key --reason \"stolen shipment\"\n"
    "  puf revoke --from recalled.txt --bundle bundles/b1 --key keys/factory.key   # one id a line",
    add_arguments,
    run,
    extras=("device", "factory"),
    rank=23,
)
