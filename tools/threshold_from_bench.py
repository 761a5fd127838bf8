"""Set a bundle's threshold for the paper's database from a `puf bench` run of that bundle.

    python tools/threshold_from_bench.py bench_out/bench.json --bundle models/default
    python tools/threshold_from_bench.py bench_out/bench.json --scores device   # the run's own index's scores
    python tools/threshold_from_bench.py million/bench.json --confirm   # keep the threshold, check another size

By default the threshold is calibrated on exact search's best scores (`puf bench --exact`,
`trainer.harness.bench.exact`): the score no index exceeds beyond its code rounding, which
enrollment's guard keeps within `trainer.enroll.MAX_SCORE_RISE`. So it holds for whichever
kind of shard index a bundle's size and memory budget plan; calibrated on one index's scores
(`--scores device`), it holds for that index only.

Held-out comparisons enroll each label once; the paper's database enrolls it in 100 augmented
copies, which lifts a counterfeit's best score. The bench measures that directly: each
counterfeit photo's best score over its pattern's shard at 4,155,600 enrolled. As the bench's
report does (`trainer.harness.bench.report.threshold_check`), the tail of the first half of
the counterfeit photos gives the threshold for 1e-5 a query, and the second half, which the
choice never saw, checks it; the check is recorded beside the threshold. The tool refuses a
run of another model, a run whose database holds stand-in labels (they fill a database for
capacity, memory and search time; a calibration never uses them), and a threshold the second
half does not confirm: genuine photos
accepted below 99.9% of the readable ones, or the second half's own tail estimate above the
goal by more than the tail method's own error (`TAIL_ERROR`: on scores of known distributions,
the true rate at a threshold it sets lay within 0.06-2.9 times the target; `trainer/tail.py`).
A second half drawn like the first estimates about the goal, above or below it by chance.

`--confirm` keeps the bundle's threshold and checks it on a run of another shard size (more
labels a shard, or fewer copies of each): when none of the run's counterfeit photos clears it,
their tail estimate there is within `TAIL_ERROR` of the goal and genuine photos keep 99.9%,
the run's size is added to the sizes the threshold holds at (`Decision.checked_sizes`, which
`puf enroll` and `puf export-region` read); otherwise it refuses and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TAIL_ERROR = 3.0  # how far a tail estimate may lie from the truth (see the module)
SCORES_TEXT = {  # what the calibration's scores were, in the manifest's tail record
    "exact": "each counterfeit photo's best score over its shard by exact search (an index's scores stay within "
             "enrollment's score-error guard of it): the rate is per query, for every kind of shard index",
    "device": "each counterfeit photo's best score over its shard, by the run's own shard index: the rate is per "
              "query, for that kind of index"}


def main(argv: list[str] | None = None) -> int:
    from edge_app.errors import PufError

    try:
        return calibrate(argv)
    except PufError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def calibrate(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json", type=Path, help="bench.json of a `puf bench` run of this bundle")
    parser.add_argument("--bundle", type=Path, default=Path("models/default"))
    parser.add_argument("--scores", choices=("exact", "device"), default="exact",
                        help="calibrate on exact search's best scores (default: the threshold holds for every shard "
                             "kind) or on the device index's of this run (it holds for that index)")
    parser.add_argument("--confirm", action="store_true",
                        help="keep the bundle's threshold and check it on this run, a database of another shard "
                             "size; if it holds there, add that size to the sizes it holds at")
    args = parser.parse_args(argv)

    from edge_app.bundle_format import Decision, Manifest
    from edge_app.errors import PufError
    from trainer.harness.bench.report import SCORES, threshold_check
    from trainer.metrics import GENUINE_GOAL, QUERY_FAR_GOAL, device_threshold

    result = json.loads(args.bench_json.read_text())
    manifest = Manifest.read(args.bundle)
    mine = (manifest.model.name, manifest.model.version) if manifest.model else None
    if (result["model"]["name"], result["model"]["version"]) != mine:
        raise PufError(f"{args.bench_json} measured {result['model']['name']} {result['model']['version']}, "
                       f"not this bundle's model {mine}")
    db = result["database"]
    if "stand_in_labels" not in db or db["stand_in_labels"]:
        raise PufError(f"{args.bench_json} enrolled {db.get('stand_in_labels', 'uncounted')} stand-in labels beside "
                       f"its {db.get('real_labels', 0):,} real ones; a calibration needs every label distinct "
                       "(`puf bench` without --vectors)")
    if not result.get(SCORES[args.scores]):
        raise PufError(f"{args.bench_json} holds no {args.scores} scores" + (
            ": run `puf bench` with --exact (or calibrate on its index's scores, --scores device)"
            if args.scores == "exact" else ""))
    if args.confirm:
        return confirm(result, manifest, args)
    check = threshold_check(result, args.scores)
    if check is None:
        raise PufError(f"{args.bench_json} holds too few counterfeit photos for a tail")
    genuine_share = check["genuine_accepted"] / max(check["genuine_readable"], 1)
    if check["estimated"] > TAIL_ERROR * QUERY_FAR_GOAL or genuine_share < GENUINE_GOAL:
        raise PufError(f"the photos after the first half do not confirm {check['threshold']:.4f}: tail estimate "
                       f"{check['estimated']:.1e} a query (goal {QUERY_FAR_GOAL:g}, within the tail's own error "
                       f"{TAIL_ERROR:g}x), genuine accepted "
                       f"{100 * genuine_share:.2f}% (goal {100 * GENUINE_GOAL:g}%)")
    before = manifest.decision
    manifest.decision = Decision(
        threshold=device_threshold(check["threshold"]), far=None, calibrated=True, query_far=QUERY_FAR_GOAL,
        labels_per_shard=shard_size(db)["labels"], vectors_per_shard=shard_size(db)["vectors"],
        tail={**check["chosen_tail"], "scores": SCORES_TEXT[args.scores]},
        extra={"calibrated_on": f"`puf bench` at {db['vectors']:,} enrolled ({db['real_labels']:,} distinct labels, "
                                f"each its own simulated film region never seen in training, in {db['shards']} "
                                f"shards{classes(result['plan'].get('patterns', 0))}, "
                                f"{copies(result['plan']['augmented'])}): the tail of the "
                                f"{'exact ' if args.scores == 'exact' else ''}best scores of counterfeit photos "
                                f"0-{check['chosen_on'] - 1:,} "
                                f"({check['method']}); the threshold before was {before.threshold}",
               "checked_on": {k: check[k] for k in ("counterfeit_readable", "counterfeit_accepted", "upper_bound",
                                                    "estimated", "genuine_readable", "genuine_accepted")}
               | {"photos": f"counterfeit {check['chosen_on']:,}-{check['counterfeit_photos'] - 1:,}, genuine "
                            f"{check['genuine_from']:,}-{check['genuine_photos'] - 1:,}"}})
    manifest.write(args.bundle)
    print(f"{args.bundle}: threshold {before.threshold} -> {manifest.decision.threshold}; on the photos never used "
          f"to choose it: {check['counterfeit_accepted']} of {check['counterfeit_readable']:,} counterfeits "
          f"accepted (tail estimate {check['estimated']:.1e} a query), {check['genuine_accepted']:,} of "
          f"{check['genuine_readable']:,} readable genuine photos accepted")
    return 0


def confirm(result: dict, manifest, args: argparse.Namespace) -> int:
    """Check the bundle's threshold on every photo of a run of another shard size; record that
    size when it holds there."""
    from edge_app.errors import PufError
    from trainer.harness.bench.report import at_threshold
    from trainer.metrics import GENUINE_GOAL, QUERY_FAR_GOAL

    decision = manifest.decision
    if decision is None or decision.threshold is None or not decision.is_calibrated or decision.query_far is None:
        raise PufError(f"{args.bundle} has no threshold calibrated for a rate a query to confirm; calibrate one first")
    check = at_threshold(result, decision.threshold, args.scores)
    if check is None:
        raise PufError(f"{args.bench_json} holds too few counterfeit photos for a tail")
    db = result["database"]
    size = shard_size(db)
    genuine_share = check["genuine_accepted"] / max(check["genuine_readable"], 1)
    if check["counterfeit_accepted"] or check["estimated"] > TAIL_ERROR * decision.query_far \
            or genuine_share < GENUINE_GOAL:
        raise PufError(f"{decision.threshold} does not hold at {size['labels']:,} labels and {size['vectors']:,} "
                       f"vectors a shard: {check['counterfeit_accepted']} of {check['counterfeit_readable']:,} "
                       f"counterfeits accepted, tail estimate {check['estimated']:.1e} a query (goal "
                       f"{decision.query_far:g}, within the tail's own error {TAIL_ERROR:g}x), genuine accepted "
                       f"{100 * genuine_share:.2f}% (goal {100 * GENUINE_GOAL:g}%); calibrate at that size instead")
    record = {**size, **check, "scores": args.scores,
              "run": f"`puf bench` at {db['vectors']:,} enrolled ({db['real_labels']:,} distinct labels in "
                     f"{db['shards']} shards{classes(result['plan'].get('patterns', 0))}, "
                     f"{copies(result['plan']['augmented'])})"}
    decision.checked_sizes = [s for s in decision.checked_sizes or []
                              if (s["labels"], s["vectors"]) != (size["labels"], size["vectors"])] + [record]
    manifest.write(args.bundle)
    print(f"{args.bundle}: threshold {decision.threshold} holds at {size['labels']:,} labels and {size['vectors']:,} "
          f"vectors a shard too: 0 of {check['counterfeit_readable']:,} counterfeits accepted (tail estimate "
          f"{check['estimated']:.1e} a query, goal {QUERY_FAR_GOAL:g}), {check['genuine_accepted']:,} of "
          f"{check['genuine_readable']:,} readable genuine photos accepted")
    return 0


def shard_size(db: dict) -> dict:
    """A run's distinct labels and enrolled vectors a shard, as the decision records them."""
    from trainer.harness.bench.report import distinct_per_shard

    return {"labels": round(distinct_per_shard(db)), "vectors": round(db["vectors"] / max(db["shards"], 1))}


def classes(patterns: int) -> str:
    return f" of the first {patterns} pattern classes only" if patterns else ""


def copies(augmented: int) -> str:
    return "each label enrolled once" if augmented == 1 else f"each label in {augmented} copies"


if __name__ == "__main__":
    sys.exit(main())
