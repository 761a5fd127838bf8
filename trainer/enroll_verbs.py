"""The factory's bundle verbs for the `puf` command: `keygen`, `enroll`, `queries`, `evaluate`.

Only the standard library at module level; Faiss, the model runtime and `cryptography`
are imported when a verb runs. These are factory verbs: they need the trainer extra
(they import `trainer`'s data code) and the device extra (they run the device's model
runtime and Faiss), so a device-only install does not offer them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.verbs import Verb
from edge_app.verify_cli import label_px

_NEEDS = ("tensorflow", "faiss", "cryptography", "ai_edge_litert")


def _keygen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", type=Path, help="writes PREFIX.key (private) and PREFIX.pub (public)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing pair")
    parser.add_argument("--json", action="store_true")


def _keygen(args: argparse.Namespace) -> int:
    from trainer.keys import generate_keypair

    private, public, key_id = generate_keypair(args.prefix, args.force)
    if args.json:
        print(json.dumps({"private": str(private), "public": str(public), "key_id": key_id}))
    else:
        print(f"key {key_id}: private {private} (keep it at the factory), public {public} "
              "(copy it into each device's trusted keys folder)")
    return 0


def _trusted_keys_argument(parser: argparse.ArgumentParser) -> None:
    """The keys whose signature on a bundle a re-signing verb accepts (`trainer.keys.check_before_signing`)."""
    parser.add_argument("--trusted-keys", type=Path,
                        help="folder of *.pub keys besides --key's own whose signature on the bundle is accepted "
                             "before re-signing (default: $PUF_TRUSTED_KEYS, else ~/.config/puf/trusted_keys, "
                             "when it exists)")


def _enroll_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder (from puf export); updated in place")
    parser.add_argument("--labels", type=Path, required=True,
                        help="the factory's registry.sqlite, or a crop folder (labels.csv + crops/)")
    parser.add_argument("--key", type=Path, help="private key to sign the bundle with (puf keygen); without it "
                                                 "the bundle is unsigned and devices refuse it")
    _trusted_keys_argument(parser)
    parser.add_argument("--batch", action="append", default=[], help="only this batch (repeatable)")
    parser.add_argument("--capture", help="in a crop folder, the capture to enroll (e.g. m0; default: the first)")
    parser.add_argument("--rotations", type=int, default=1,
                        help="enroll N turned copies of each crop (orientation unknown; default 1)")
    parser.add_argument("--augmented", type=int, default=0,
                        help="enroll N augmented copies of each crop (the paper used 100)")
    parser.add_argument("--memory-mb", type=float, default=1400.0,
                        help="memory budget of the bundle on the device, MB (default 1400)")
    parser.add_argument("--capacity", type=int, default=0,
                        help="plan index codes for this many vectors, so later batches fit without re-encoding")
    parser.add_argument("--exact-max", type=int, help="shards up to this many vectors are searched exactly "
                                                      "(default 5000)")
    parser.add_argument("--recall", type=float, default=0.999,
                        help="recall@1 of exact search to tune for (default 0.999: a miss refuses a genuine label)")
    parser.add_argument("--templates", type=Path, help="glyph templates (.npz) to ship in the bundle "
                                                       "(default: rendered from the factory's patterns)")
    parser.add_argument("--thumbnails", type=int, default=0, metavar="PX",
                        help="also store a PX x PX grey thumbnail of each label (PX*PX bytes a label), which the "
                             "device shows beside a genuine match; from a bundle's first enrollment on")
    parser.add_argument("--valid-days", type=float, metavar="DAYS",
                        help="the signed bundle expires DAYS after signing: devices refuse to install it later "
                             "(default: the expiry it had, if any)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _enroll(args: argparse.Namespace) -> int:
    from trainer.enroll import EnrollOptions, describe, enroll
    from trainer.index_build import EXACT_MAX
    from trainer.keys import load_private_key

    key = load_private_key(args.key) if args.key else None
    options = EnrollOptions(rotations=args.rotations, augmented=args.augmented, memory_budget_mb=args.memory_mb,
                            capacity=args.capacity, exact_max=args.exact_max or EXACT_MAX,
                            target_recall=args.recall, thumbnails=args.thumbnails,
                            valid_days=args.valid_days)
    report = enroll(args.bundle, args.labels, key, options, tuple(args.batch), args.capture, args.templates,
                    progress=not args.json, trusted_keys=args.trusted_keys)
    print(json.dumps(report, indent=1, ensure_ascii=False) if args.json else describe(report))
    return 0


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="an enrolled bundle")
    parser.add_argument("--queries", type=Path, action="append", required=True,
                        help="crop folder of held-out captures (labels.csv + crops/LABEL_ID/*.png); repeatable")
    parser.add_argument("--captures", default="h",
                        help="use captures whose names start with this (default h: handheld; '' for all)")
    parser.add_argument("--far", type=float, default=1e-5, help="target false-accept rate (default 1e-5)")
    parser.add_argument("--frr-bound", type=float,
                        help="a written threshold's genuine comparisons must bound the FRR below this at 95%% "
                             "(default: the library's, 0.01: 299 comparisons)")
    parser.add_argument("--key", type=Path, help="write the threshold into the bundle and re-sign it with this key "
                                                 "(refused when the comparisons are too few for --far)")
    _trusted_keys_argument(parser)
    parser.add_argument("--out", type=Path, help="folder for the figures (det.png, scores.png, timings.png)")
    parser.add_argument("--no-classify", action="store_true", help="search every shard, as puf verify --no-classify")
    parser.add_argument("--max-queries", type=int, default=0, help="evaluate a random sample of this many")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluation import FRR_BOUND, describe, evaluate
    from trainer.keys import load_private_key

    key = load_private_key(args.key) if args.key else None
    report = evaluate(args.bundle, args.queries, captures=args.captures or None, far=args.far,
                      classify=not args.no_classify, private_key=key, out=args.out, max_queries=args.max_queries,
                      progress=not args.json, frr_bound=args.frr_bound or FRR_BOUND, trusted_keys=args.trusted_keys)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1) if args.json else describe(report))
    return 0


def _queries_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", type=Path, help="folder of photos named by label id (B0001-0007-03.jpg, "
                                                  "B0001-0007-03_2.jpg), or a CSV with columns photo,label_id")
    parser.add_argument("--out", type=Path, required=True,
                        help="query set folder (labels.csv + crops/LABEL_ID/hN.png + photos.csv); a re-run resumes")
    parser.add_argument("--bundle", type=Path, required=True,
                        help="bundle whose glyph templates turn each crop upright, or a templates .npz")
    parser.add_argument("--registry", type=Path,
                        help="the factory's registry.sqlite: each label's pattern (default: the glyph's reading)")
    parser.add_argument("--label-px", type=label_px, default=None, metavar="auto|PX",
                        help="label side in the photos, px, or auto: found in each photo as the device does "
                             "(default auto)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _queries(args: argparse.Namespace) -> int:
    from trainer.queries import build_queries, describe

    report = build_queries(args.photos, args.out, args.bundle, registry_path=args.registry, label_px=args.label_px,
                           progress=not args.json)
    print(json.dumps(report, indent=1) if args.json else describe(report))
    return 0


keygen = Verb(
    "keygen",
    "Make an Ed25519 key pair for signing bundles.",
    "  puf keygen keys/factory            # keys/factory.key, keys/factory.pub\n"
    "  cp keys/factory.pub ~/.config/puf/trusted_keys/   # on each device",
    _keygen_arguments,
    _keygen,
    needs=_NEEDS,
    extra="all",
)

enroll = Verb(
    "enroll",
    "Embed label crops with a bundle's model into its per-pattern Faiss shards; sign the new version.",
    "  puf enroll --bundle bundles/b1 --labels out/registry.sqlite --key keys/factory.key\n"
    "  puf enroll --bundle bundles/b1 --labels crops/ --capture m0 --key keys/factory.key\n"
    "  puf enroll --bundle bundles/b1 --labels crops/ --thumbnails 64 --key keys/factory.key\n"
    "  puf enroll --bundle bundles/b1 --labels out/registry.sqlite --batch B0002 --key keys/factory.key\n"
    "  puf enroll --bundle bundles/paper --labels crops/ --augmented 100 --memory-mb 1400",
    _enroll_arguments,
    _enroll,
    needs=_NEEDS,
    extra="all",
)

queries = Verb(
    "queries",
    "Cut handheld photos of known labels into the query set puf evaluate calibrates the threshold on.",
    "  puf queries photos/ --bundle bundles/b1 --out data/recaptures      # photos named B0001-0007-03_2.jpg\n"
    "  puf queries photos.csv --bundle bundles/b1 --registry out/registry.sqlite --out data/recaptures\n"
    "  puf evaluate --bundle bundles/b1 --queries data/recaptures --far 1e-4 --key keys/factory.key",
    _queries_arguments,
    _queries,
    needs=_NEEDS,  # offered where puf evaluate is: the query set is for it
    extra="all",
)

evaluate = Verb(
    "evaluate",
    "Score held-out captures against a bundle: FAR, FRR, EER, TAR at FAR; set its threshold; DET and timing PNGs.",
    "  puf evaluate --bundle bundles/b1 --queries data/heldout --far 1e-5 --out reports/b1\n"
    "  puf evaluate --bundle bundles/b1 --queries data/heldout --far 1e-5 --key keys/factory.key\n"
    "  puf evaluate --bundle bundles/b1 --queries data/recaptures --far 1e-4 --key keys/factory.key  # puf queries",
    _evaluate_arguments,
    _evaluate,
    needs=_NEEDS,
    extra="all",
)
