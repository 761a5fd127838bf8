"""`puf evaluate`: how a bundle separates genuine re-captures from never-enrolled labels, and its
threshold (`trainer.evaluation`).

Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.arguments import non_negative_int, output_path, positive_int, probability
from edge_app.verbs import Verb, print_report
from trainer.verb_enroll import trusted_keys_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="an enrolled bundle")
    parser.add_argument("--queries", type=Path, action="append", required=True,
                        help="crop folder of held-out captures (labels.csv + crops/LABEL_ID/*.png); repeatable")
    parser.add_argument("--captures", default="h",
                        help="use captures whose names start with this (default h: handheld; '' for all)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--query-far", type=probability,
                      help="set the threshold for this false-accept rate per counterfeit query (the chance that a "
                           "never-enrolled label is accepted), at the largest shard (or --deployed-labels), from the "
                           "impostor score tail (default: the library's goal, 1e-5)")
    rate.add_argument("--far", type=probability,
                      help="set it instead for this false-accept rate per comparison (one query against one "
                           "label: a shard of N labels lets up to N times more counterfeits through)")
    parser.add_argument("--deployed-labels", type=positive_int,
                        help="report (and with --query-far set the threshold for) a planned size: this many labels "
                             "enrolled, over the pattern classes")
    parser.add_argument("--frr-bound", type=probability,
                        help="a written threshold's genuine comparisons must bound the FRR below this at 95%% "
                             "(default: the library's, 0.01: 299 comparisons)")
    parser.add_argument("--key", type=Path, help="write the threshold into the bundle and re-sign it with this key "
                                                 "(refused when the comparisons are too few for the rate asked, "
                                                 "or the calibration's own queries were accepted as another label)")
    parser.add_argument("--sign-despite-false-accepts", action="store_true",
                        help="with --key: sign the threshold even though some of the calibration's own queries "
                             "(never-enrolled labels, or labels taken for another) were accepted under it")
    trusted_keys_argument(parser)
    parser.add_argument("--out", type=output_path, help="folder for the figures (det.png, scores.png, timings.png)")
    parser.add_argument("--no-classify", action="store_true", help="search every shard, as puf verify --no-classify")
    parser.add_argument("--max-queries", type=non_negative_int, default=0,
                        help="evaluate a random sample of this many")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate; a refusal still leaves its report (in --out, and on stdout as JSON with --json,
    "refused" saying why) so that a script can tell why, before the error on stderr."""
    from edge_app.errors import PufError
    from trainer.evaluation import FRR_BOUND, Refused, describe, evaluate
    from trainer.keys import load_private_key

    try:
        key = load_private_key(args.key) if args.key else None
        report = evaluate(args.bundle, args.queries, captures=args.captures or None, far=args.far,
                          classify=not args.no_classify, private_key=key, out=args.out,
                          max_queries=args.max_queries, progress=not args.json,
                          frr_bound=args.frr_bound or FRR_BOUND, trusted_keys=args.trusted_keys,
                          query_far_target=args.query_far, deployed_labels=args.deployed_labels,
                          sign_despite_false_accepts=args.sign_despite_false_accepts)
    except PufError as error:
        refusal = {**(error.report if isinstance(error, Refused) else {"written": False}), "error": str(error)}
        _save(args.out, refusal)
        if args.json:
            print(json.dumps(refusal, indent=1, ensure_ascii=False))
        raise
    _save(args.out, report.to_dict())
    return print_report(report.to_dict(), args.json, describe)


def _save(out: Path | None, report: dict) -> None:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))


verb = Verb(
    "evaluate",
    "Score held-out captures against a bundle: FAR, FRR, EER, TAR at FAR; set its threshold; DET and timing PNGs.",
    "  puf evaluate --bundle bundles/b1 --queries data/heldout --out reports/b1   # 1e-5 per query\n"
    "  puf evaluate --bundle bundles/b1 --queries data/recaptures --query-far 1e-4 --key keys/factory.key\n"
    "  puf evaluate --bundle bundles/b1 --queries data/heldout --far 1e-5 --key keys/factory.key  # per comparison\n"
    "  puf evaluate --bundle bundles/b1 --queries data/heldout --query-far 1e-5 --deployed-labels 4155600 "
    "--key keys/factory.key",
    add_arguments,
    run,
    extras=("device", "factory"),
    rank=25,
)
