"""`puf queries`: handheld photos of known labels cut into the query set `puf evaluate` calibrates on.

Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import nonempty_path, output_path
from edge_app.verb_verify import label_px
from edge_app.verbs import Verb, print_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", type=nonempty_path, help="folder of photos named by label id (B0001-0007-03.jpg, "
                                                  "B0001-0007-03_2.jpg), or a CSV with columns photo,label_id")
    parser.add_argument("--out", type=output_path, required=True,
                        help="query set folder (labels.csv + crops/LABEL_ID/hN.png + photos.csv); a re-run resumes")
    parser.add_argument("--bundle", type=Path, required=True,
                        help="bundle whose glyph templates turn each crop upright, or a templates .npz")
    parser.add_argument("--registry", type=Path,
                        help="the factory's registry.sqlite: each label's pattern (default: the glyph's reading)")
    parser.add_argument("--label-px", type=label_px, default=None, metavar="auto|PX",
                        help="label side in the photos, px, or auto: found in each photo as the device does "
                             "(default auto)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from trainer.queries import build_queries, describe

    report = build_queries(args.photos, args.out, args.bundle, registry_path=args.registry, label_px=args.label_px,
                           progress=not args.json)
    return print_report(report, args.json, describe)


verb = Verb(
    "queries",
    "Cut handheld photos of known labels into the query set puf evaluate calibrates the threshold on.",
    "  puf queries photos/ --bundle bundles/b1 --out data/recaptures      # photos named B0001-0007-03_2.jpg\n"
    "  puf queries photos.csv --bundle bundles/b1 --registry out/registry.sqlite --out data/recaptures\n"
    "  puf evaluate --bundle bundles/b1 --queries data/recaptures --far 1e-4 --key keys/factory.key",
    add_arguments,
    run,
    extras=("device", "factory"),
    rank=24,
)
