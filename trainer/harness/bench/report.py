"""The bench's results for people: tables beside the paper's figures, and its pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_app.errors import PufError
from trainer.charts import histograms_png
from trainer.harness import paper
from trainer.harness.bench import normalisation
from trainer.metrics import QUERY_FAR_GOAL, rate_bounds
from trainer.tail import Tail


def _paper_row(search_ms: str, total_ms: int, accuracy: tuple[float, float]) -> dict:
    return {"model": paper.span(paper.MODEL_MS), "search": search_ms, "total": f"~{total_ms}",
            "genuine": paper.percent(accuracy[0]), "counterfeit": paper.percent(accuracy[1])}


# The paper's figures (`trainer.harness.paper`): its 10,000 queries against 4,155,600 enrolled vectors
PAPER = {
    "without_classification": _paper_row(paper.span(paper.SEARCH_WHOLE_MS), paper.TOTAL_WHOLE_MS,
                                         paper.WITHOUT_CLASSIFICATION),
    "with_classification": _paper_row(paper.span(paper.SEARCH_SHARD_MS), paper.TOTAL_MS, paper.WITH_CLASSIFICATION),
}
MODE_TEXT = {"without_classification": "without classification (every shard)",
             "with_classification": "with classification (predicted pattern's shard)"}


def _pct(row: dict | None, kind: str) -> str:
    """Photos judged right, and of those segmentation could read (an unreadable photo asks the
    user to retake it: never an acceptance, so it counts as right for counterfeits and clones)."""
    if not row:
        return "-"
    text = f"{100 * row['accuracy']:.2f}% ({row['correct']:,}/{row['photos']:,})"
    unreadable = row.get("unreadable", 0)
    if unreadable and row["photos"] > unreadable:
        right = row["correct"] - (0 if kind == "genuine" else unreadable)
        text += f"; {100 * right / (row['photos'] - unreadable):.2f}% of readable"
    return text


def _by_kind(rows: dict) -> str:
    """Table cells: genuine, counterfeit and clone photos judged right."""
    return " | ".join(_pct(rows.get(kind), kind) for kind in ("genuine", "counterfeit", "clone"))


def _ms(stats: dict) -> str:
    return f"{stats['median']:.2f} / {stats['p99']:.2f}" if stats.get("n") else "-"


def tables(result: dict) -> str:
    """Markdown tables: the paper's experiment, the keypoint baseline, the second stage (each part
    the run left out, None in the results, is left out here too)."""
    db = result["database"]
    lines = [f"Database: {db['how']}",
             f"Shards: {db['shards']} ({', '.join(db['index_kinds'])}), {db['shard_vectors'].get('median', 0):,.0f} "
             f"vectors a shard (median), {db['bytes'] / 1e6:,.0f} MB, nprobe median {db['nprobe'].get('median', '-')}, "
             f"recall@1 of exact search on genuine-like queries median {db['recall_at_1_genuine_like'].get('median')}"
             f"{_stand_in_note(db)}",
             f"Model: {result['model']['name']} {result['model']['version']} int8, {result['model']['input']} px, "
             f"{result['model']['embedding_dim']}-d; threshold {result['threshold']}; "
             f"{result['machine']['cpus']} CPU cores, 2 threads, Python {result['machine']['python']}",
             "",
             "| mode | | extraction (model) ms | search ms | total ms | genuine accepted | counterfeit rejected "
             "| clones rejected |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode in ("without_classification", "with_classification"):
        quoted = PAPER[mode]
        lines.append(f"| {MODE_TEXT[mode]} | paper | {quoted['model']} | {quoted['search']} | {quoted['total']} | "
                     f"{quoted['genuine']} | {quoted['counterfeit']} | - |")
        rows = result[mode]
        if not rows:  # left out of this run
            continue
        timing = rows["genuine"]["timings_ms"]
        lines.append(f"| | here (median / p99) | {_ms(timing['model'])} | {_ms(timing['search'])} | "
                     f"{_ms(timing['total'])} | {_by_kind(rows)} |")
    unread = {k: v["unreadable"] for k, v in result["with_classification"].items()}
    lines.append(f"\nUnreadable photos (segmentation found no usable label; counted as not accepted): {unread}. "
                 f"Total = segmentation + model + search + decision on the photo.")
    lines += ["", *_threshold_at_scale(result)]
    if result.get("exact_scores"):
        lines += ["", *_exact(result)]
    if result["whole_index"]:
        lines += ["", *_whole_index(result["whole_index"])]
    if result["keypoint_baseline"]:
        lines += ["", *_keypoints(result)]
    if result["second_stage"]:
        lines += ["", *_second_stage(result["second_stage"])]
    if result["normalisation"]:
        lines += ["", *normalisation.table(result["normalisation"])]
    steps = ", ".join(f"{k} {v}" for k, v in result["steps"].items())
    lines.append(f"\nSteps: {steps}; whole run {result['seconds'] / 60:.1f} min.")
    return "\n".join(lines)


def _stand_in_note(db: dict) -> str:
    """Beside the capacity figures of a database with stand-ins: what they are, and that the
    accuracy figures are of its distinct labels only."""
    if not db.get("stand_in_labels"):
        return f". Every label distinct: {distinct_per_shard(db):,.0f} labels a shard (mean)"
    return (f". Stand-ins: {db['stand_in_labels']:,} of the {db['labels']:,} labels; vectors, MB and search times "
            f"(capacity, memory, search time) include them, the accuracy figures do not: each query competes with "
            f"{distinct_per_shard(db):,.0f} distinct labels a shard (mean), not {db['labels'] / db['shards']:,.0f}")


def distinct_per_shard(db: dict) -> float:
    """Distinct (real) labels a shard, the number an accuracy figure or a calibration holds for."""
    return db["real_labels"] / max(db["shards"], 1)


def _keypoints(result: dict) -> list[str]:
    """The exhaustive keypoint baseline beside the fingerprint."""
    db, plan = result["database"], result["plan"]
    kp = result["keypoint_baseline"]
    lines = [f"Keypoint baseline (SIFT, ratio test, RANSAC similarity, border and glyph masked, >= "
             f"{kp['min_inliers']} inliers), exhaustive over a gallery of {kp['gallery_labels']} labels:", "",
             "| method | genuine accepted | counterfeit rejected | clones rejected | time a query |",
             "| --- | --- | --- | --- | --- |"]
    fp = result["with_classification"]
    lines.append(f"| fingerprint (this model, {db['real_labels']:,} distinct labels, {db['vectors']:,} vectors) | "
                 f"{_by_kind(fp)} | "
                 f"{fp['genuine']['timings_ms']['total'].get('median', 0):.2f} ms |")
    rows = kp["kinds"]
    lines.append(f"| keypoints, {kp['gallery_labels']} labels | {_by_kind(rows)} | {kp['ms_per_query_gallery']:.1f} ms "
                 f"({kp['extract_ms']:.2f} ms to extract + {kp['ms_per_comparison']:.3f} ms a comparison) |")
    at_labels, at_vectors = kp["ms_per_query_at_paper_labels"] / 1000, kp["ms_per_query_at_paper_vectors"] / 1000
    lines.append(f"| keypoints at the paper's {paper.LABELS:,} labels / {plan['vectors']:,} images (extrapolated) "
                 "| | | | "
                 f"{at_labels:,.1f} s / {at_vectors:,.0f} s |")
    return lines


def _second_stage(stage: dict) -> list[str]:
    """Keypoints re-checking the top-k candidates."""
    lines = [f"Keypoints as a second stage re-checking the fingerprint search's top k candidates "
             f"({stage['note']}):", "",
             "| k | mode | genuine accepted | counterfeit accepted | clones accepted | added ms (median / p99) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in stage["rows"]:
        cells = [f"{100 * row.get(f'{k}_accepted', 0):.2f}% of {row.get(f'{k}_photos', 0):,}"
                 for k in ("genuine", "counterfeit", "clone")]
        added = row["added_ms"]
        lines.append(f"| {row['k']} | {row['mode']} | {' | '.join(cells)} | "
                     f"{added.get('median', 0):.2f} / {added.get('p99', 0):.2f} |")
    return lines


def _threshold_at_scale(result: dict) -> list[str]:
    """The bundle's threshold against a threshold chosen at this run's scale, by the rule that
    set the shipped one (the midpoint of the gap between the highest counterfeit and the lowest
    genuine score), on one half of the photos and tested on the other (two folds, by parity)."""
    genuine, counterfeit = readable(result["scores"]["genuine"]), readable(result["scores"]["counterfeit"])
    if len(genuine) < 2 or len(counterfeit) < 2:
        return []

    def row(name: str, threshold: float, g: np.ndarray, c: np.ndarray) -> str:
        return (f"| {name} | {threshold:.4f} | {int((g >= threshold).sum()):,} / {len(g):,} | "
                f"{int((c >= threshold).sum()):,} / {len(c):,} |")

    lines = [f"Scores, with classification (readable photos; each query against "
             f"{distinct_per_shard(result['database']):,.0f} distinct labels a shard): genuine lowest "
             f"{genuine.min():.3f}, counterfeit highest {counterfeit.max():.3f}, median {np.median(counterfeit):.3f}. "
             f"Threshold at this scale (genuine scores above it / counterfeits above it):", "",
             "| threshold | value | genuine accepted | counterfeit accepted |", "| --- | --- | --- | --- |",
             row("the bundle's", result["threshold"], genuine, counterfeit)]
    for fit, test in ((0, 1), (1, 0)):
        chosen = (genuine[fit::2].min() + counterfeit[fit::2].max()) / 2
        lines.append(row(f"gap midpoint of the {'even' if fit == 0 else 'odd'} photos, tested on the others",
                         chosen, genuine[test::2], counterfeit[test::2]))
    tail = counterfeit_tail(result)
    if tail:
        lines += ["", f"Counterfeits accepted beyond what {tail['queries']:,} photos can show: the best scores of "
                      f"the counterfeit photos, their top {tail['tail']['fit_scores']} fitted by a generalized Pareto "
                      "distribution (trainer.tail; shape at its 95% upper bound, so the estimate errs high). At the "
                      f"bundle's threshold: {tail['accepted']} of {tail['queries']:,} accepted (95% upper bound "
                      f"{tail['upper_bound']:.1e}), tail estimate {tail['estimated']:.1e} a query. For 1e-5 a query "
                      f"the threshold would be {tail['threshold_1e-5']:.4f} ({tail['method_1e-5']}), which accepts "
                      f"{tail['genuine_at_1e-5']:,} of {len(genuine):,} readable genuine photos."]
    check = threshold_check(result)
    if check:
        lines += ["", *_check_lines(check, "the device's best scores")]
    return lines


def _check_lines(check: dict, scores: str) -> list[str]:
    """A threshold chosen on the first half of the photos, and what the second half says of it."""
    return [f"A threshold for 1e-5 a query chosen on photos the test never sees, from {scores}: the tail of the "
            f"counterfeit photos 0-{check['chosen_on'] - 1:,} gives {check['threshold']:.4f} ({check['method']}); on "
            f"the photos after them (counterfeits {check['chosen_on']:,}-{check['counterfeit_photos'] - 1:,}, "
            f"genuine {check['genuine_from']:,}-{check['genuine_photos'] - 1:,}):", "",
            "| photos never used to choose | readable | accepted at the chosen threshold | 95% upper bound "
            "| tail estimate a query |", "| --- | --- | --- | --- | --- |",
            f"| counterfeit | {check['counterfeit_readable']:,} | {check['counterfeit_accepted']:,} | "
            f"{check['upper_bound']:.1e} | {check['estimated']:.1e} |",
            f"| genuine | {check['genuine_readable']:,} | {check['genuine_accepted']:,} "
            f"({100 * check['genuine_accepted'] / max(check['genuine_readable'], 1):.2f}%) | - | - |"]


def _exact(result: dict) -> list[str]:
    """The device's best scores beside exact search's for the same photos: what the index missed
    or rounded, and a threshold calibrated on the scores no index exceeds."""
    exact, device = result.get("exact_scores"), result["scores"]
    if not exact:
        return []
    lines = [f"Exact search (`trainer.harness.bench.exact`: each photo's best inner product with the float vectors of "
             f"the shards it searches, the score no index exceeds beyond its code rounding), the first "
             f"{len(exact['counterfeit']):,} photos of each kind:", "",
             "| photos | both read | highest: device / exact | lowest: device / exact | device below exact by "
             "> 0.001 (index missed the nearest) | device above exact, most (code rounding) | at the bundle's "
             "threshold: device / exact |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind in ("genuine", "counterfeit", "clone"):
        both = zip(device[kind][:len(exact[kind])], exact[kind], strict=True)
        pairs = np.asarray([(d, e) for d, e in both if d is not None and e is not None], np.float64).reshape(-1, 2)
        if not len(pairs):
            continue
        gap = pairs[:, 0] - pairs[:, 1]
        at = (pairs >= result["threshold"]).sum(axis=0)
        lines.append(f"| {kind} | {len(pairs):,} | {pairs[:, 0].max():.3f} / {pairs[:, 1].max():.3f} | "
                     f"{pairs[:, 0].min():.3f} / {pairs[:, 1].min():.3f} | {int((gap < -0.001).sum()):,} | "
                     f"{max(float(gap.max()), 0.0):.4f} | {int(at[0]):,} / {int(at[1]):,} |")
    check = threshold_check(result, "exact")
    return lines + (["", *_check_lines(check, "exact search's best scores")] if check else [])


# which of a bench result's scores a calibration reads: the device index's, or exact search's (`exact`)
SCORES = {"device": "scores", "exact": "exact_scores"}


def readable(scores: list) -> np.ndarray:
    """The scores of the readable photos (an unreadable photo's score is None)."""
    return np.asarray([s for s in scores if s is not None], np.float64)


def threshold_check(result: dict, scores: str = "device") -> dict | None:
    """A threshold chosen, then tested on photos the choice never saw: the tail of the first
    half of the counterfeit photos' best scores gives the threshold for `QUERY_FAR_GOAL` a
    query; the second half of the counterfeit photos, and of the genuine ones, test it (the
    photos accepted, and the tail of the second half at that threshold). Photos are numbered
    by their seeds, so a run with more photos keeps the earlier ones as its first part.
    `scores`: the device's (its shard index's) or exact search's (`SCORES`); None when the run
    has no such scores."""
    found = result.get(SCORES[scores])
    if not found:
        return None
    counterfeit, genuine = found["counterfeit"], found["genuine"]
    chosen_on, genuine_from = len(counterfeit) // 2, len(genuine) // 2
    tested, tested_genuine = readable(counterfeit[chosen_on:]), readable(genuine[genuine_from:])
    try:
        choose, test = Tail.fit(readable(counterfeit[:chosen_on])), Tail.fit(tested)
    except PufError:  # too few photos for a tail
        return None
    threshold, method = choose.threshold(QUERY_FAR_GOAL)
    accepted = int((tested >= threshold).sum())
    return {"chosen_on": chosen_on, "threshold": float(threshold), "method": method,
            "counterfeit_photos": len(counterfeit), "counterfeit_readable": len(tested),
            "counterfeit_accepted": accepted, "upper_bound": rate_bounds(accepted, len(tested))[1],
            "estimated": float(test.pair_far(threshold)), "chosen_tail": choose.to_dict(), "tail": test.to_dict(),
            "genuine_from": genuine_from, "genuine_photos": len(genuine), "genuine_readable": len(tested_genuine),
            "genuine_accepted": int((tested_genuine >= threshold).sum())}


def at_threshold(result: dict, threshold: float, scores: str = "device") -> dict | None:
    """What every photo of the run says of `threshold`: counterfeits accepted, their 95% upper
    bound and tail estimate a query there, genuine photos accepted (of readable); None when the
    run has no such scores or too few counterfeits for a tail."""
    found = result.get(SCORES[scores])
    if not found:
        return None
    counterfeit, genuine = readable(found["counterfeit"]), readable(found["genuine"])
    try:
        tail = Tail.fit(counterfeit)
    except PufError:  # too few photos for a tail
        return None
    accepted = int((counterfeit >= threshold).sum())
    return {"counterfeit_readable": len(counterfeit), "counterfeit_accepted": accepted,
            "upper_bound": rate_bounds(accepted, len(counterfeit))[1], "estimated": float(tail.pair_far(threshold)),
            "genuine_readable": len(genuine), "genuine_accepted": int((genuine >= threshold).sum())}


def counterfeit_tail(result: dict) -> dict | None:
    """The chance that a counterfeit photo is accepted, estimated from the upper tail of the
    counterfeit photos' best scores (each is already the best over the shard searched), at the
    bundle's threshold; and the threshold a per-query rate of 1e-5 would need."""
    counterfeit, genuine = readable(result["scores"]["counterfeit"]), readable(result["scores"]["genuine"])
    try:
        tail = Tail.fit(counterfeit)
    except PufError:  # too few photos for a tail
        return None
    threshold = result["threshold"]
    accepted = int((counterfeit >= threshold).sum())
    below, method = tail.threshold(QUERY_FAR_GOAL)
    return {"queries": len(counterfeit), "accepted": accepted,
            "upper_bound": rate_bounds(accepted, len(counterfeit))[1],
            "estimated": float(tail.pair_far(threshold)), "tail": tail.to_dict(),
            "threshold_1e-5": float(below), "method_1e-5": method, "genuine_at_1e-5": int((genuine > below).sum())}


def _whole_index(whole: dict) -> list[str]:
    """The whole database as one index: the nprobe sweep up to the recall target."""
    lines = [f"The whole database as one index ({whole['index']}, {whole['bytes_per_vector']} bytes a vector, "
             f"memory-mapped; the paper's search without classification), searched with the fingerprints of "
             f"{whole['queries']:,} genuine photos; exact search of the {whole['vectors']:,} float32 vectors takes "
             f"{whole['exact_ms']:,.1f} ms a query and finds the photo's own label for "
             f"{100 * whole['exact_agrees_with_own_label']:.2f}% of them:", "",
             "| nprobe | recall@1 of exact search (by label) | own label found, above threshold | ms a query "
             "(median / p99) |", "| --- | --- | --- | --- |"]
    for row in whole["sweep"]:
        lines.append(f"| {row['nprobe'] if row['nprobe'] is not None else 'exact index'} | "
                     f"{100 * row['recall_at_1']:.2f}% | {100 * row['own_label_above_threshold']:.2f}% | "
                     f"{row['ms']:.3f} / {row['p99_ms']:.3f} |")
    return lines


def score_pictures(result: dict, folder: Path) -> list[Path]:
    """Figure-5-like: score distributions of genuine, counterfeit and clone queries, and the
    time histograms (extraction, search, total)."""
    folder = Path(folder)
    scores = {kind: readable(v) for kind, v in result["scores"].items() if any(x is not None for x in v)}
    written = [histograms_png(scores, folder / "bench_scores.png",
                              f"best cosine score of each query (threshold {result['threshold']:.4f}), "
                              f"{result['database']['vectors']:,} enrolled", unit="", log_count=True,
                              marks={"threshold": result["threshold"]},
                              xlabel="best cosine score against the enrolled labels")]
    times = {f"{k} (classified)": np.asarray([x for x in v if x is not None]) for k, v in result["times_ms"].items()}
    every_shard = [x for x in result["times_unclassified_ms"]["search"] if x is not None]
    if every_shard:
        times["search (every shard)"] = np.asarray(every_shard)
    written.append(histograms_png(times, folder / "bench_times.png", "time a query, 2 threads", unit="ms",
                                  log_x=True, xlabel="ms a query (log scale)"))
    return written
