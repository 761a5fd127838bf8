"""`puf enroll`: label crops embedded by a bundle's model into its per-pattern Faiss shards, and the
new version signed.

Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import non_negative_int, positive, positive_int
from edge_app.verbs import Verb, print_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder (from puf export); updated in place")
    parser.add_argument("--labels", type=Path, required=True,
                        help="the factory's registry.sqlite, or a crop folder (labels.csv + crops/)")
    signing_arguments(parser)
    parser.add_argument("--batch", action="append", default=[], help="only this batch (repeatable)")
    parser.add_argument("--capture", help="in a crop folder, the capture to enroll (e.g. m0; default: the first)")
    parser.add_argument("--rotations", type=positive_int, default=1,
                        help="enroll N turned copies of each crop (orientation unknown; default 1)")
    parser.add_argument("--augmented", type=non_negative_int, default=0,
                        help="enroll N augmented copies of each crop (the paper used 100)")
    shard_arguments(parser)
    parser.add_argument("--thumbnails", type=non_negative_int, default=0, metavar="PX",
                        help="also store a PX x PX grey thumbnail of each label (PX*PX bytes a label), which the "
                             "device shows beside a genuine match; from a bundle's first enrollment on")
    store_arguments(parser, required=False)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def signing_arguments(parser: argparse.ArgumentParser) -> None:
    """The key that signs the new version, the keys trusted to have signed the old, its validity
    (shared with `puf export-region`)."""
    parser.add_argument("--key", type=Path, help="private key to sign the bundle with (puf keygen); without it "
                                                 "the bundle is unsigned and devices refuse it")
    trusted_keys_argument(parser)
    parser.add_argument("--valid-days", type=float, metavar="DAYS",
                        help="the signed bundle expires DAYS after signing: devices refuse to install it later "
                             "(default: the expiry it had, if any)")


def trusted_keys_argument(parser) -> None:
    """The option of every verb that re-signs a bundle: the keys whose signature on it
    `trainer.keys.check_before_signing` accepts."""
    parser.add_argument("--trusted-keys", type=Path,
                        help="folder of *.pub keys besides --key's own whose signature on the bundle is accepted "
                             "before re-signing (default: $PUF_TRUSTED_KEYS, else ~/.config/puf/trusted_keys, "
                             "when it exists)")


def shard_arguments(parser: argparse.ArgumentParser) -> None:
    """How shards are planned and tuned (`trainer.enroll.EnrollOptions`), and the templates shipped
    (shared with `puf export-region`)."""
    from trainer.enroll import DEFAULT_BUDGET_MB, DEFAULT_RECALL
    from trainer.index_build import EXACT_MAX

    parser.add_argument("--memory-mb", type=positive, default=DEFAULT_BUDGET_MB,
                        help=f"memory budget of the bundle on the device, MB (default {DEFAULT_BUDGET_MB:g})")
    parser.add_argument("--capacity", type=non_negative_int, default=0,
                        help="plan index codes for this many vectors, so later batches fit without re-encoding")
    parser.add_argument("--exact-max", type=positive_int,
                        help=f"shards up to this many vectors are searched exactly (default {EXACT_MAX})")
    parser.add_argument("--recall", type=float, default=DEFAULT_RECALL,
                        help=f"recall@1 of exact search to tune for (default {DEFAULT_RECALL:g}: a miss refuses a "
                             "genuine label)")
    approximate_scores_argument(parser)
    parser.add_argument("--templates", type=Path, help="glyph templates (.npz) to ship in the bundle when it has "
                                                       "none (default: rendered from the factory's patterns)")


def approximate_scores_argument(parser: argparse.ArgumentParser) -> None:
    """The override of the score-error guard (`trainer.enroll.check_score_errors`), on every
    verb that writes shards."""
    from trainer.enroll import MAX_SCORE_RISE

    parser.add_argument("--accept-approximate-scores", action="store_true",
                        help=f"write shards whose codes (IVF-SQ4, IVF-PQ: a tight --memory-mb) raise scores above "
                             f"exact search by more than {MAX_SCORE_RISE:g}, and mark the threshold not calibrated "
                             "(then: puf evaluate --query-far); without it such shards are refused")


def removal_arguments(parser: argparse.ArgumentParser) -> None:
    """How the verbs that take labels out (`puf unenroll`, `puf revoke`) rebuild the shards
    that held them (`trainer.label_removal.removal_options`)."""
    parser.add_argument("--memory-mb", type=positive,
                        help="memory budget of the bundle on the device, MB, for the shards rebuilt "
                             "(default: the bundle's own)")
    approximate_scores_argument(parser)


def shard_options(args: argparse.Namespace, **more):
    """The `trainer.enroll.EnrollOptions` of the shard and signing arguments (and `more`)."""
    from trainer.enroll import EnrollOptions
    from trainer.index_build import EXACT_MAX

    return EnrollOptions(memory_budget_mb=args.memory_mb, capacity=args.capacity,
                         exact_max=args.exact_max or EXACT_MAX, target_recall=args.recall,
                         valid_days=args.valid_days, accept_approximate_scores=args.accept_approximate_scores,
                         **more)


def store_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """The fingerprint store (`trainer.fingerprint_store`) and the product/region of its labels."""
    from trainer.fingerprint_store import DEFAULT_PRODUCT

    parser.add_argument("--milvus", required=required, metavar="FILE_OR_URI",
                        help="the fingerprint store: a Milvus Lite file (a path ending in .db) or a Milvus server "
                             "(http://host:19530)" + ("" if required else "; the labels' fingerprints are also "
                                                                          "written there (needs --region)"))
    parser.add_argument("--region", required=required, help="the labels' region (letters and digits)")
    parser.add_argument("--product",
                        help=f"the labels' product (letters and digits; default: the library's, {DEFAULT_PRODUCT})")


def store_target(args: argparse.Namespace):
    """The store and region of --milvus, --product, --region (None without --milvus)."""
    from edge_app.errors import PufError
    from trainer.fingerprint_store import DEFAULT_PRODUCT, Region, StoreTarget

    if args.milvus is None:
        if args.region or args.product:
            raise PufError("--region and --product name where fingerprints go in the store: give --milvus too")
        return None
    if not args.region:
        raise PufError("--milvus needs --region: the region the labels are sold in")
    return StoreTarget(args.milvus, Region(args.product or DEFAULT_PRODUCT, args.region))


def run(args: argparse.Namespace) -> int:
    from trainer.enroll import enroll
    from trainer.keys import load_private_key

    store = store_target(args)
    key = load_private_key(args.key) if args.key else None
    options = shard_options(args, rotations=args.rotations, augmented=args.augmented, thumbnails=args.thumbnails)
    report = enroll(args.bundle, args.labels, key, options, tuple(args.batch), args.capture, args.templates,
                    progress=not args.json, trusted_keys=args.trusted_keys, store=store)
    return print_report(report.to_dict(), args.json, lambda _: report.describe())


verb = Verb(
    "enroll",
    "Embed label crops with a bundle's model into its per-pattern Faiss shards; sign the new version.",
    "  puf enroll --bundle bundles/b1 --labels out/registry.sqlite --key keys/factory.key\n"
    "  puf enroll --bundle bundles/b1 --labels crops/ --capture m0 --key keys/factory.key\n"
    "  puf enroll --bundle bundles/b1 --labels crops/ --thumbnails 64 --key keys/factory.key\n"
    "  puf enroll --bundle bundles/b1 --labels out/registry.sqlite --batch B0002 --key keys/factory.key\n"
    "  puf enroll --bundle bundles/paper --labels crops/ --augmented 100 --memory-mb 1400\n"
    "  puf enroll --bundle bundles/b1 --labels out/registry.sqlite --milvus central/fp.db --region eu "
    "--key keys/factory.key",
    add_arguments,
    run,
    extras=("device", "factory"),
    rank=22,
)
