"""`puf export-region`: one product/region's device bundle (signed per-pattern Faiss shards) exported
from the fingerprint store that `puf enroll --milvus` writes (`trainer.region_export`).

Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_app.arguments import output_path
from edge_app.verbs import Verb, print_report
from fabrication.verb_registry import CENTRAL_ENV
from trainer.verb_enroll import shard_arguments, shard_options, signing_arguments, store_arguments, store_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True,
                        help="a bundle of the model whose fingerprints to export (from puf export, or enrolled)")
    store_arguments(parser, required=True)
    parser.add_argument("--out", type=output_path, required=True,
                        help="the region's bundle folder (replaced atomically)")
    parser.add_argument("--central", metavar="URL",
                        help="the central registry whose revoked labels (puf registry revoke) the export leaves out "
                             "and lists as revoked (default: $PUF_CENTRAL when set; the bundles' own revocations "
                             "are carried always)")
    signing_arguments(parser)
    shard_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from trainer.keys import load_private_key
    from trainer.region_export import describe, export_region

    target = store_target(args)
    key = load_private_key(args.key) if args.key else None
    report = export_region(target.uri, args.bundle, args.out, target.region, key, shard_options(args),
                           args.trusted_keys, args.templates, args.central or os.environ.get(CENTRAL_ENV))
    return print_report(report, args.json, describe)


verb = Verb(
    "export-region",
    "Export one product/region's device bundle (signed per-pattern Faiss shards) from the fingerprint store.",
    "  puf enroll --bundle bundles/b1 --labels out/registry.sqlite --milvus central/fp.db --region eu "
    "--key keys/factory.key\n"
    "  puf export-region --bundle bundles/b1 --milvus central/fp.db --region eu --out bundles/eu "
    "--key keys/factory.key\n"
    "  puf export-region --bundle bundles/b1 --milvus http://milvus:19530 --product tea --region cn "
    "--out bundles/tea-cn --key keys/factory.key",
    add_arguments,
    run,
    extras=("device", "factory", "central"),
    rank=22,
)
