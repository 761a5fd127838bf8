"""`puf bench`: the paper's experiment at its scale, a keypoint baseline, and search scaling."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.arguments import output_path, positive
from edge_app.verbs import Verb, print_report
from trainer import quiet_tensorflow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: 240 distinct labels x 100 copies (24,000 vectors), 500 + 500 "
                             "queries (same steps and outputs)")
    parser.add_argument("--out", type=output_path, default=Path("bench_out"), help="results folder (default bench_out)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "puf-bench",
                        help="where the rendered labels, fingerprints, shards and photos are kept for re-runs "
                             "(default ~/.cache/puf-bench)")
    parser.add_argument("--bundle", type=Path, help="the model bundle (default: $PUF_BUNDLE, else models/default)")
    parser.add_argument("--figures", type=output_path, metavar="DIR", help="also write the pictures here (e.g. docs/)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    sizes = parser.add_argument_group("sizes (default: the paper's; --quick: small)")
    sizes.add_argument("--labels", type=int, help="distinct simulated labels enrolled (default 41,556)")
    sizes.add_argument("--augmented", type=int, help="enrolled copies of each label (default 100, as the paper)")
    sizes.add_argument("--vectors", type=int,
                       help="database size (default labels x copies: every label distinct); more is filled with "
                            "stand-in labels, which show capacity, memory and search time only")
    sizes.add_argument("--patterns", type=int,
                       help="enroll and photograph labels of only the first N pattern classes (default all): "
                            "each of their shards holds as many distinct labels as --labels x N / 44 would give "
                            "at the full size, for N / 44 of the rendering")
    sizes.add_argument("--genuine", type=int, help="genuine photos (default 10,000)")
    sizes.add_argument("--counterfeit", type=int, help="never-enrolled photos (default 10,000)")
    sizes.add_argument("--clones", type=int, help="clone photos (default 500)")
    sizes.add_argument("--unclassified", type=int, help="photos of each kind also verified without "
                                                        "classification (default all)")
    sizes.add_argument("--exact", type=int, help="photos of each kind also scored by exact search over their shards' "
                                                 "float vectors, the score no index exceeds (default all)")
    sizes.add_argument("--keypoint-gallery", type=int, help="labels of the exhaustive keypoint baseline (default 200)")
    sizes.add_argument("--second-stage", type=int, help="photos of each kind re-checked by keypoints (default 1,000)")
    sizes.add_argument("--whole-queries", type=int, help="genuine photos searched in the whole database as one "
                                                         "index (default 2,000)")
    sizes.add_argument("--normalisation", type=int, help="genuine and counterfeit photos scored by the score "
                                                         "normalisation rules (default 10,000)")
    sizes.add_argument("--workers", type=int, help="processes for rendering and the model (default 2)")
    parser.add_argument("--whole-photos", action="store_true",
                        help="render every handheld photo's whole 800x600 frame (slow), not only the label's window")
    from trainer.enroll import DEFAULT_BUDGET_MB

    parser.add_argument("--memory-mb", type=positive, default=DEFAULT_BUDGET_MB,
                        help=f"memory budget of the shards, as puf enroll plans it (default {DEFAULT_BUDGET_MB:g})")
    parser.add_argument("--scaling", metavar="SIZES",
                        help="instead: search time and memory at these database sizes, e.g. 1e4,1e5,1e6,1e7 "
                             "(random unit vectors beyond what is enrolled)")


def _plan(args: argparse.Namespace):
    from trainer.harness.bench.plan import BenchPlan

    overrides = {name: getattr(args, name) for name in
                 ("labels", "augmented", "vectors", "patterns", "genuine", "counterfeit", "clones", "unclassified",
                  "exact", "keypoint_gallery", "second_stage", "whole_queries", "normalisation", "workers")
                 if getattr(args, name) is not None}
    if args.whole_photos:
        overrides["whole_photos"] = 1
    if "genuine" in overrides or "counterfeit" in overrides:
        for every in ("unclassified", "exact"):
            overrides.setdefault(every, max(overrides.get("genuine", 0), overrides.get("counterfeit", 0)))
    return BenchPlan.quick(**overrides) if args.quick else BenchPlan(**overrides)


def run(args: argparse.Namespace) -> int:
    quiet_tensorflow()
    from edge_app.errors import PufError
    from edge_app.runtime import default_bundle

    bundle = args.bundle or default_bundle()
    if not (Path(bundle) / "manifest.json").exists():
        raise PufError(f"no model bundle at {bundle}; give --bundle")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.scaling:
        from trainer.harness.bench import scaling

        try:
            sizes = [int(float(s)) for s in args.scaling.split(",") if s.strip()]
        except (ValueError, OverflowError):  # not a number; inf
            raise PufError(f"--scaling takes sizes such as 1e4,1e5,1e6; got {args.scaling!r}") from None
        result = scaling.run(sizes, args.memory_mb, args.cache)
        (args.out / "bench_scaling.json").write_text(json.dumps(result, indent=1))
        if args.figures:
            scaling.pictures(result, args.figures)
        return print_report(result, args.json, scaling.table)
    from trainer.harness.bench import experiment, report

    plan = _plan(args)
    result = experiment.run(plan, Path(bundle), args.cache, args.memory_mb)
    path = args.out / "bench.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    text = report.tables(result)
    (args.out / "bench.md").write_text(text + "\n")
    pictures = report.score_pictures(result, args.figures or args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k not in ("scores", "exact_scores", "times_ms",
                                                                         "times_unclassified_ms")},
                         indent=1, default=str))
    else:
        print(text)
        print(f"\nresults: {path}; pictures: {', '.join(str(p) for p in pictures)}")
    return 0


verb = Verb(
    "bench",
    "Measure the whole recognition stage at the paper's scale, beside a keypoint baseline.",
    "  puf bench --quick                          # a few minutes: small database, 500 queries\n"
    "  puf bench --out bench_out                  # 41,556 distinct labels x 100 copies, 10,000 + 10,000 queries",
    add_arguments,
    run,
    extras=("device", "factory"),
    rank=41,
)
