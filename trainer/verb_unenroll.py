"""`puf unenroll`: take labels enrolled by mistake out of a bundle, signed as a new version.

Only the standard library at module level; the work (`trainer.unenroll`) is imported when the
verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import nonempty_path
from edge_app.verbs import Verb
from trainer.verb_enroll import removal_arguments, signing_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=nonempty_path, required=True,
                        help="bundle folder; updated in place (a new version)")
    parser.add_argument("--batch", action="append", default=[], help="every label of this batch (repeatable)")
    parser.add_argument("--label", action="append", default=[], metavar="ID", help="one label (repeatable)")
    parser.add_argument("--registry", type=Path,
                        help="the factory's registry.sqlite: records the labels as no longer in this bundle "
                             "(they stay enrolled in other bundles that hold them)")
    signing_arguments(parser)
    removal_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError
    from edge_app.ids import check_id
    from edge_app.verbs import print_report
    from trainer.keys import check_valid_days, load_private_key
    from trainer.unenroll import chosen_labels, describe, remove_labels

    if not args.batch and not args.label:
        raise PufError("name what to remove: --batch ID or --label ID")
    batches = tuple(check_id("batch", batch) for batch in args.batch)
    labels = tuple(check_id("label", label) for label in args.label)
    if args.valid_days is not None:
        check_valid_days(args.valid_days)
    key = load_private_key(args.key) if args.key else None
    chosen = chosen_labels(args.bundle, batches, labels, args.registry)
    if not chosen:
        raise PufError(f"the bundle {args.bundle} holds no label of batch {', '.join(batches)}; nothing changed")
    report = remove_labels(args.bundle, chosen, key, args.trusted_keys, args.valid_days, args.registry,
                           args.memory_mb, args.accept_approximate_scores)
    return print_report(report, args.json, describe)


verb = Verb(
    "unenroll",
    "Take labels enrolled by mistake (a batch, or single labels) out of a bundle; sign the new version.",
    "  puf unenroll --bundle bundles/b1 --batch B0002 --registry out/registry.sqlite --key keys/factory.key\n"
    "  puf unenroll --bundle bundles/b1 --label B0002-0003-07 --key keys/factory.key",
    add_arguments,
    run,
    extras=("device", "factory"),
    rank=22,
)
