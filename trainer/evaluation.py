"""`puf evaluate`: how a bundle separates genuine re-captures from never-enrolled labels,
and the decision threshold for a target false-accept rate.

Queries are held-out captures in folder data sets (``labels.csv`` + ``crops/LABEL_ID/*.png``,
as `trainer.simdata` writes), by default only the handheld ones (names starting with
"h"), which were never enrolled. A query of an enrolled label is *genuine*, any other an
*impostor*. Every query goes through the device's own path (`edge_app.verify.Verifier`:
one model run, the predicted pattern's shard, the runner-up's when unsure) and is timed.

Two views, both reported:

* **comparisons (1:1)**, the field's usual figures: a genuine score is a query against its
  own label, an impostor score a query against every other label of the shards the device
  would search for it (its pattern's; every shard with ``classify=False``). EER and TAR at
  FAR 1e-3 / 1e-4 / 1e-5 come from these, and so does the threshold: the lowest score whose
  false accepts still bound the FAR below `far` at 95% (`trainer.metrics.confident_threshold`).
  That needs at least about 3 / `far` impostor comparisons; with fewer, the threshold at the
  measured FAR is reported, flagged, and never written.
* **decisions (1:N)**: what the device does at that threshold: genuine queries accepted as
  their own label, accepted as another (a false accept), or rejected; impostor queries
  accepted. A query searched against a shard of N labels has a false-accept chance of up
  to N times the per-comparison FAR.
* **per query, at the deployed size** (`trainer.tail`): a counterfeit's best score is the maximum
  over the n labels of the shard it is searched in, so its false-accept chance is
  1 - (1 - p(t))^n, p(t) the per-comparison FAR, estimated from the impostor comparisons'
  upper tail (empirical, then a generalized Pareto fit: the method, its fit range and the
  comparisons are reported). It is reported at the bundle's actual shard sizes (labels in each
  shard the device searches: its pattern's, or all with ``classify=False``), and with
  ``deployed_labels`` at a planned size (that many labels over the pattern classes). With
  ``query_far`` the threshold is set for that per-query FAR at the largest shard (or the planned
  size) instead of `far` per comparison, and the decision records what it assumed
  (``query_far``, ``labels_per_shard``, ``tail``). A query whose pattern the head is unsure of
  is searched in two shards; the same-pattern one decides its false accepts.

With neither ``far`` nor ``query_far`` the threshold is set for the project's per-query goal
(`trainer.metrics.QUERY_FAR_GOAL`) at the bundle's largest shard: the rate a user means.

With a signing key the threshold is written into the bundle's ``decision`` (``calibrated``,
with exact 95% bounds on FAR and FRR, `trainer.metrics.rate_bounds`) and the bundle re-signed
(a new version, `trainer.bundle_write`), but only when the comparisons can support it: a FAR
of 1e-4 needs about 30,000 impostor comparisons, and the threshold is refused below that
(`sufficiency`). Also refused (`refusals`): a threshold outside (0, 1), which no cosine score
or every one clears; an impostor tail dominated by label pairs that score like the same label
(textures that repeat: no tail model holds there, so they are named); and, unless
``sign_despite_false_accepts``, a threshold under which the calibration's own queries were
accepted as a label they are not. A refusal (`Refused`) carries the report that shows why.
`puf queries` (`trainer.queries`) makes query sets from handheld photos.
Figures: a DET curve, the score distributions and the model and search time histograms, as PNG.

(`trainer.model_accuracy` is the model-level evaluation done at export: every label enrolled
from one capture, every pair scored exactly. This module evaluates a bundle as the device
searches it.)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from edge_app.bundle import Bundle, Check, open_bundle
from edge_app.bundle_format import MANIFEST, Decision
from edge_app.errors import PufError
from edge_app.shards import stored_vectors
from edge_app.verify import Verifier
from trainer.bundle_write import BundleUpdate, bundle_lock, check_update
from trainer.charts import det_curve_png, histograms_png
from trainer.data import FolderDataset
from trainer.metrics import (
    QUERY_FAR_GOAL,
    confident_threshold,
    device_threshold,
    rate_bounds,
    tar_at_far,
    trials_needed,
    verification_report,
)
from trainer.tail import MAX_EXTRAPOLATION, MIN_PAIRS, Tail, pair_far_for, query_far

if TYPE_CHECKING:
    from trainer.keys import SigningKey

CONFIDENCE = 0.95  # of the bounds on FAR and FRR
FRR_BOUND = 0.01  # a written threshold's genuine comparisons must bound the FRR below this (299 of them)


class Refused(PufError):
    """A threshold `evaluate` will not write, with the report that shows why (`EvaluationReport.to_dict`)."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


@dataclass(kw_only=True)
class EvaluationReport:
    """What `evaluate` measured and did; `to_dict()` is `puf evaluate --json`'s report and its
    report.json (the optional parts only when there is something to say), `describe` its text."""

    bundle: str
    queries: int
    classify: bool
    genuine_queries: int
    impostor_queries: int
    comparisons: dict  # `trainer.metrics.verification_report`
    decision: dict  # as written into the manifest (`edge_app.bundle_format.Decision`)
    decisions_at_threshold: dict
    per_query: dict | None  # `per_query_far`, when the impostor tail was fitted
    pattern_accuracy: float
    timings_ms: dict
    written: bool = False  # the threshold written into the bundle, re-signed
    warning: str | None = None
    too_few_pairs: str | None = None  # why the comparisons cannot support the rate asked
    near_identical_pairs: list | None = None
    refused: list[str] | None = None  # why the threshold is not written (`refusals`)
    figures: list[str] | None = None  # the PNGs written into --out

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items()
                if value is not None or key not in _OPTIONAL_PARTS}


_OPTIONAL_PARTS = ("warning", "too_few_pairs", "near_identical_pairs", "refused", "figures")


@dataclass
class Query:
    label_id: str
    pattern: str
    path: Path


def collect_queries(folders: list[Path], captures: str | None) -> list[Query]:
    queries = []
    for folder in folders:
        dataset = FolderDataset(folder)
        for label_id in sorted(dataset.crops):
            queries += [Query(label_id, dataset.pattern[label_id], path) for path in dataset.crops[label_id]
                        if captures is None or path.stem.startswith(captures)]
    if not queries:
        raise PufError(f"no query crops{f' named {captures}*' if captures else ''} in {', '.join(map(str, folders))}")
    return queries


def shard_vectors(bundle) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pattern -> (decoded vectors, label ids) of every shard."""
    return {pattern: (stored_vectors(shard.index), np.char.decode(np.asarray(shard.ids), "ascii"))
            for pattern, shard in bundle.shards.shards.items()}


def comparison_scores(embedding: np.ndarray, label_id: str, shards: list[tuple[np.ndarray, np.ndarray]]
                      ) -> tuple[float | None, np.ndarray, np.ndarray]:
    """The query's score against its own label (None if not in the shards), and against every
    other label of the shards with those labels' ids (a label's score is its best enrolled copy)."""
    if not shards:
        return None, np.zeros(0, np.float32), np.zeros(0, str)
    vectors = np.concatenate([v for v, _ in shards])
    ids = np.concatenate([i for _, i in shards])
    scores = vectors @ embedding
    labels, inverse = np.unique(ids, return_inverse=True)
    best = np.full(len(labels), -np.inf, np.float32)
    np.maximum.at(best, inverse, scores)
    own = np.flatnonzero(labels == label_id)
    genuine = float(best[own[0]]) if len(own) else None
    return genuine, np.delete(best, own), np.delete(labels, own)


def evaluate(bundle_path: Path, folders: list[Path], *, captures: str | None = "h", far: float | None = None,
             classify: bool = True, private_key: SigningKey | None = None, out: Path | None = None,
             model_format: str | None = None,
             max_queries: int = 0, seed: int = 0, progress: bool = True, frr_bound: float = FRR_BOUND,
             trusted_keys: Path | None = None, query_far_target: float | None = None,
             deployed_labels: int | None = None, sign_despite_false_accepts: bool = False) -> EvaluationReport:
    """Score the queries of `folders` against the bundle and set the threshold for `far` per
    comparison, or for `query_far_target` per query at the largest shard (or at
    `deployed_labels` over the pattern classes: see the module); neither: QUERY_FAR_GOAL per
    query. With `private_key` the threshold is written (and the bundle re-signed) only when the
    comparisons can support it: enough impostor ones to bound the FAR asked at 95%, and enough
    genuine ones to bound the FRR below `frr_bound` (see `sufficiency`), and none of `refusals`
    holds; otherwise `Refused` says why.
    A bundle whose manifest that key or one of `trusted_keys` did not sign is refused first
    (`trainer.keys.check_before_signing`)."""

    query_far_target = _check_targets(far, query_far_target, frr_bound, deployed_labels)
    bundle_path = Path(bundle_path)
    opened = open_bundle(bundle_path, Check.FORMAT)
    if private_key is not None:  # refuse before the work, not after it
        check_update(bundle_path, opened.manifest, private_key, trusted_keys)
    bundle = Bundle.of(opened.checked_files())  # the factory's own bundle: intact?
    verifier = Verifier(bundle, classify=classify, model_format=model_format, num_threads=2)
    queries = collect_queries(folders, captures)
    if max_queries and len(queries) > max_queries:
        keep = np.sort(np.random.default_rng(seed).choice(len(queries), max_queries, replace=False))
        queries = [queries[i] for i in keep]
    vectors = shard_vectors(bundle)
    rows, genuine_pairs, impostor_pairs, nearest = score_queries(verifier, queries, vectors, classify, progress)
    near = near_identical_pairs(genuine_pairs, nearest) if len(genuine_pairs) else []
    if not len(genuine_pairs) or not len(impostor_pairs):
        raise PufError(f"need both genuine and impostor comparisons (got {len(genuine_pairs)} and "
                       f"{len(impostor_pairs)}): give captures of enrolled and of never-enrolled labels")
    comparisons = verification_report(genuine_pairs, impostor_pairs)
    sizes = shard_sizes(vectors, classify)
    planned = None if deployed_labels is None else (
        -(-deployed_labels // len(bundle.pattern_classes)) if classify else deployed_labels)
    assumed = planned or max(sizes)
    tail = Tail.fit(impostor_pairs) if query_far_target is not None or len(impostor_pairs) >= MIN_PAIRS else None
    far, last_rejected, method, chosen = _operating_point(genuine_pairs, impostor_pairs, far, query_far_target,
                                                          tail, assumed)
    threshold = device_threshold(last_rejected)
    decisions = decision_rates(rows, threshold)
    false_accepts = int(np.sum(impostor_pairs >= threshold))
    false_rejects = int(np.sum(genuine_pairs < threshold))
    decision = {
        "threshold": threshold, "far": far, "provisional": False, "calibrated": True,
        "far_kind": "per comparison, within the shard the device searches" + (
            f"; set for a per-query FAR of {query_far_target:g} at {assumed:,} labels a shard"
            if query_far_target is not None else ""),
        "far_resolved": chosen["resolved"], "tar_at_far": float(np.mean(genuine_pairs >= threshold)),
        "confidence": CONFIDENCE, "threshold_at_measured_far": round(chosen["threshold"], 6),
        "far_measured": false_accepts / len(impostor_pairs),
        "far_bounds": list(rate_bounds(false_accepts, len(impostor_pairs), CONFIDENCE)),
        "frr_measured": false_rejects / len(genuine_pairs),
        "frr_bounds": list(rate_bounds(false_rejects, len(genuine_pairs), CONFIDENCE)),
        "calibrated_on": f"{len(genuine_pairs)} genuine and {len(impostor_pairs)} impostor comparisons of "
                         f"{len(rows)} held-out captures in {', '.join(str(f) for f in folders)} "
                         f"({verifier.runner.format} model)",
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    per_query = None
    if tail is not None:
        per_query = per_query_far(tail, threshold, sizes, planned)
        decision["labels_per_shard"] = assumed
        decision["tail"] = tail.to_dict() | {"pair_far_at_threshold": per_query["pair_far"]}
        decision["query_far_at_threshold"] = query_far(per_query["pair_far"], assumed)
    if query_far_target is not None:
        decision["query_far"] = query_far_target
        decision["tail"]["method"] = method
    shortfall = sufficiency(len(genuine_pairs), len(impostor_pairs), far, frr_bound,
                            extrapolated=query_far_target is not None)
    report = EvaluationReport(
        bundle=str(bundle_path), queries=len(rows), classify=classify,
        genuine_queries=sum(r["genuine"] for r in rows), impostor_queries=sum(not r["genuine"] for r in rows),
        comparisons=comparisons, decision=decision, decisions_at_threshold=decisions, per_query=per_query,
        pattern_accuracy=float(np.mean([r["pattern_read"] for r in rows])),
        timings_ms={k: summary([r[k] for r in rows]) for k in ("model_ms", "search_ms")},
        too_few_pairs=shortfall or None, near_identical_pairs=near or None)
    if not chosen["resolved"] and query_far_target is None:
        report.warning = (f"FAR {far:g} is not resolved by {len(impostor_pairs)} impostor comparisons "
                          f"(needs >= {int(np.ceil(1 / far))}): the threshold is the highest impostor score seen")
    false = accepted_as_another(rows, threshold)
    if false and sign_despite_false_accepts:  # the signed decision says what its signer knew
        decision["signed_despite_false_accepts"] = len(false)
    report.refused = refusals(threshold, near, false, len(rows), sign_despite_false_accepts) or None
    if out is not None:
        report.figures = figures(Path(out), genuine_pairs, impostor_pairs, rows, far, threshold,
                                 comparisons["eer_threshold"])
    if private_key is not None:
        _write_threshold(bundle_path, decision, report, private_key, trusted_keys)
    return report


def _check_targets(far: float | None, query_far_target: float | None, frr_bound: float,
                   deployed_labels: int | None) -> float | None:
    """The per-query FAR target (QUERY_FAR_GOAL when neither target is given); PufError for
    targets that do not go together or lie outside their range."""

    if far is not None and query_far_target is not None:
        raise PufError("give a false-accept rate per comparison (--far) or per query (--query-far), not both")
    if far is None and query_far_target is None:
        query_far_target = QUERY_FAR_GOAL
    for name, rate in (("target FAR", far), ("FRR bound", frr_bound), ("per-query FAR", query_far_target)):
        if rate is not None and not 0 < rate < 1:
            raise PufError(f"the {name} must lie between 0 and 1, got {rate}")
    if deployed_labels is not None and deployed_labels < 1:
        raise PufError(f"the deployed labels must be a positive number, got {deployed_labels}")
    return query_far_target


def score_queries(verifier, queries: list[Query], vectors: dict[str, tuple[np.ndarray, np.ndarray]],
                  classify: bool, progress: bool) -> tuple[list[dict], np.ndarray, np.ndarray, list]:
    """Every query through the device's path: its row (match, score, timings), and its genuine
    and impostor comparison scores; with the nearest impostor labels of each query."""

    enrolled = {str(i) for _, ids in vectors.values() for i in ids}
    rows = []
    genuine_pairs, impostor_pairs, nearest = [], [], []
    for query in tqdm(queries, desc="evaluating", unit="query", disable=not progress):
        crop = cv2.imread(str(query.path), cv2.IMREAD_COLOR)
        if crop is None:
            raise PufError(f"cannot read the query crop {query.path}")
        [lookup], model_ms, search_ms = verifier.lookup([crop])
        compared = [query.pattern] if classify else list(vectors)
        own, others, other_ids = comparison_scores(lookup.embedding, query.label_id,
                                                   [vectors[p] for p in compared if p in vectors])
        if own is not None:
            genuine_pairs.append(own)
        impostor_pairs.append(others)
        best = np.argsort(-others)[:NEAREST_KEPT]
        nearest += [(query.label_id, str(other_ids[i]), float(others[i])) for i in best]
        match = lookup.match
        rows.append({"genuine": query.label_id in enrolled, "label_id": query.label_id,
                     "match": match.label_id if match else None, "score": match.score if match else -1.0,
                     "pattern_ok": bool(match and match.pattern in lookup.allowed),
                     "pattern_read": lookup.pattern == query.pattern, "model_ms": model_ms, "search_ms": search_ms})
    impostor = np.concatenate(impostor_pairs) if impostor_pairs else np.zeros(0, np.float32)
    return rows, np.asarray(genuine_pairs, np.float32), impostor, nearest


def _operating_point(genuine_pairs: np.ndarray, impostor_pairs: np.ndarray, far: float | None,
                     query_far_target: float | None, tail: Tail | None, assumed: int):
    """(far per comparison, the last score rejected, the tail's method or None, TAR at that FAR):
    for a per-query target, the tail's threshold at the comparison FAR it implies at `assumed`
    labels a shard; else the threshold the comparisons vouch for, the FAR's 95% upper bound
    within the target."""

    method = None
    if query_far_target is not None:
        assert tail is not None  # fitted whenever there is a per-query target
        far = pair_far_for(query_far_target, assumed)
        last_rejected, method = tail.threshold(far)
    assert far is not None  # given, or implied by the per-query target
    chosen = tar_at_far(genuine_pairs, impostor_pairs, far)
    if query_far_target is None:
        confident = confident_threshold(impostor_pairs, far, CONFIDENCE)
        last_rejected = chosen["threshold"] if confident is None else confident
    return far, last_rejected, method, chosen


def figures(out: Path, genuine_pairs: np.ndarray, impostor_pairs: np.ndarray, rows: list[dict], far: float,
            threshold: float, eer_threshold: float) -> list[str]:
    """The DET curve, the score distributions and the timing histograms, as PNG in `out`."""

    marks = {f"FAR {far:g}": threshold, "EER": eer_threshold}
    return [str(p) for p in (
        det_curve_png(genuine_pairs, impostor_pairs, out / "det.png", marks),
        histograms_png({"genuine": genuine_pairs, "impostor": impostor_pairs}, out / "scores.png",
                       "comparison scores", unit="", log_count=True, marks={f"threshold (FAR {far:g})": threshold},
                       xlabel="cosine score of a query against an enrolled label"),
        histograms_png({"model": [r["model_ms"] for r in rows], "search": [r["search_ms"] for r in rows]},
                       out / "timings.png", "time per query (as on the device, batch 1)",
                       xlabel="ms a query"))]


def _write_threshold(bundle_path: Path, decision: dict, report: EvaluationReport, private_key: SigningKey,
                     trusted_keys: Path | None) -> None:
    """Write the decision into the bundle and re-sign it, unless the report holds a shortfall
    or a refusal (`Refused` then, with the report)."""

    if report.too_few_pairs:
        raise Refused("threshold NOT written: " + report.too_few_pairs + "; photograph more labels "
                      "(puf queries) or ask for a larger FAR", report.to_dict())
    if report.refused:
        raise Refused("threshold NOT written: " + "; ".join(report.refused), report.to_dict())
    with bundle_lock(bundle_path), BundleUpdate(bundle_path) as update:  # never over an enrollment's
        update.manifest.decision = Decision.from_dict(decision, MANIFEST)
        update.commit(private_key, trusted_keys=trusted_keys)
    report.written = True


def shard_sizes(vectors: dict[str, tuple[np.ndarray, np.ndarray]], classify: bool) -> list[int]:
    """Labels in each set of shards a query is searched in: each pattern's shard, or (without
    classification) all of them together."""
    sizes = [len(np.unique(ids)) for _, ids in vectors.values()]
    return sizes if classify else [sum(sizes)]


def per_query_far(tail: Tail, threshold: float, sizes: list[int], planned: int | None) -> dict:
    """The per-query FAR at `threshold` at each shard size found (and at the planned one)."""
    pair = tail.pair_far(threshold)
    counts = {n: sizes.count(n) for n in sorted(set(sizes))}
    report = {"threshold": threshold, "pair_far": pair, "method": tail.threshold(pair)[1] if pair > 0 else "-",
              "shards": [{"labels": n, "shards": c, "far_per_query": query_far(pair, n)} for n, c in counts.items()],
              "largest_shard_far_per_query": query_far(pair, max(sizes))}
    if planned is not None:
        report["planned"] = {"labels_per_shard": planned, "far_per_query": query_far(pair, planned)}
    return report


def sufficiency(genuine: int, impostor: int, far: float, frr_bound: float = FRR_BOUND,
                extrapolated: bool = False) -> str:
    """Why the comparisons cannot support a threshold for `far` ('' when they can): zero
    false accepts in n impostor comparisons bound the FAR below about 3/n at 95%, so the FAR
    asked needs n >= 3/FAR; a FAR `extrapolated` from the score tail (`trainer.tail`) needs
    n >= 1 / (MAX_EXTRAPOLATION FAR). The genuine ones must bound the FRR below `frr_bound`."""
    need_impostor, need_genuine = trials_needed(far, CONFIDENCE), trials_needed(frr_bound, CONFIDENCE)
    problems = []
    if extrapolated:
        need_impostor = int(np.ceil(1 / (MAX_EXTRAPOLATION * far)))
        if impostor < need_impostor:
            problems.append(f"a per-comparison FAR of {far:.3g} extrapolated from the impostor score tail needs at "
                            f"least {need_impostor:,} impostor comparisons (the tail model is trusted "
                            f"{MAX_EXTRAPOLATION} times below 1 / comparisons, no further), got {impostor:,}")
    elif impostor < need_impostor:
        problems.append(f"FAR {far:g} needs at least {need_impostor:,} impostor comparisons (zero false accepts "
                        f"in n bound the FAR below about 3/n at {CONFIDENCE:.0%}), got {impostor:,}")
    if genuine < need_genuine:
        problems.append(f"an FRR bounded below {frr_bound:g} needs at least {need_genuine:,} genuine comparisons, "
                        f"got {genuine:,}")
    return "; ".join(problems)


NEAR_IDENTICAL_SHOWN = 10  # label pairs a refusal names
NEAREST_KEPT = 3  # each query's best impostor comparisons kept with their labels, to name near-identical pairs
LIKE_GENUINE_PERCENTILE = 10  # an impostor comparison above this percentile of the genuine ones scores like one


def near_identical_pairs(genuine: np.ndarray, nearest: list[tuple[str, str, float]]) -> list[dict]:
    """Label pairs whose impostor comparisons score like the same label (at or above the genuine
    comparisons' LIKE_GENUINE_PERCENTILE), best first: two labels whose textures repeat. A score tail fitted
    over them extrapolates to nonsense (a threshold above 1), and a counterfeit of one would
    pass as the other, so they are named rather than modelled."""
    line = float(np.percentile(genuine, LIKE_GENUINE_PERCENTILE))
    best: dict[tuple[str, ...], float] = {}
    for query, enrolled, score in sorted(nearest, key=lambda n: -n[2]):
        if score >= line:
            best.setdefault(tuple(sorted((query, enrolled))), score)
    return [{"labels": list(pair), "score": round(score, 6)} for pair, score in best.items()]


def accepted_as_another(rows: list[dict], threshold: float) -> list[dict]:
    """The queries accepted at `threshold` as a label they are not (never-enrolled ones, or
    enrolled ones taken for another)."""
    return [r for r in rows if _accepted(r, threshold) and (not r["genuine"] or r["match"] != r["label_id"])]


def refusals(threshold: float, near: list[dict], false: list[dict], queries: int,
             sign_despite_false_accepts: bool) -> list[str]:
    """Why a threshold must not be signed, whatever the comparisons' number ([] when it may)."""
    problems = []
    if not 0 < threshold < 1:
        problems.append(f"the threshold came out at {threshold:.6f}, outside (0, 1): every photo's cosine score "
                        f"lies {'below' if threshold >= 1 else 'above'} it")
    if near:
        shown = ", ".join(f"{p['labels'][0]} and {p['labels'][1]} ({p['score']:.3f})"
                          for p in near[:NEAR_IDENTICAL_SHOWN])
        problems.append(f"the impostor score tail is dominated by {len(near)} label pair(s) that score like the same "
                        f"label: {shown}{' ...' if len(near) > NEAR_IDENTICAL_SHOWN else ''}; their textures repeat: "
                        "look at them, leave such labels out of enrollment and of the calibration queries, and "
                        "evaluate again")
    if false and not sign_despite_false_accepts:
        shown = ", ".join(f"{r['label_id']} as {r['match']}" for r in false[:NEAR_IDENTICAL_SHOWN])
        problems.append(f"{len(false)} of the calibration's own {queries} queries were accepted at threshold "
                        f"{threshold:.4f} as a label they are not ({shown}): ask for a lower false-accept rate, "
                        "or give --sign-despite-false-accepts to sign it knowing that")
    return problems


def _accepted(row: dict, threshold: float) -> bool:
    """What the device does with the query at `threshold`: accept its best match."""
    return row["score"] >= threshold and row["pattern_ok"]


def decision_rates(rows: list[dict], threshold: float) -> dict:
    genuine = [r for r in rows if r["genuine"]]
    impostor = [r for r in rows if not r["genuine"]]

    def accepted(r: dict) -> bool:
        return _accepted(r, threshold)

    right = sum(accepted(r) and r["match"] == r["label_id"] for r in genuine)
    wrong = sum(accepted(r) and r["match"] != r["label_id"] for r in genuine)
    false = sum(accepted(r) for r in impostor)
    return {
        "threshold": threshold,
        "genuine_accepted": right / len(genuine) if genuine else None,
        "genuine_accepted_as_another_label": wrong / len(genuine) if genuine else None,
        "genuine_rejected": 1 - (right + wrong) / len(genuine) if genuine else None,
        "impostor_accepted": false / len(impostor) if impostor else None,
        "impostor_rejected": 1 - false / len(impostor) if impostor else None,
    }


def summary(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "mean": float(v.mean())}


def describe(report: dict) -> str:
    c, d, t = report["comparisons"], report["decisions_at_threshold"], report["timings_ms"]
    lines = [f"bundle {report['bundle']}: {report['genuine_queries']} genuine and {report['impostor_queries']} "
             f"impostor queries ({'classify' if report['classify'] else 'all shards'})",
             f"comparisons: {c['genuine_pairs']} genuine, {c['impostor_pairs']} impostor; EER {c['eer']:.4%} "
             f"at {c['eer_threshold']:.3f}; genuine mean {c['genuine_mean']:.3f}, impostor mean "
             f"{c['impostor_mean']:.3f}, max {c['impostor_max']:.3f}"]
    for row in c["tar_at_far"]:
        lines.append(f"  TAR at FAR {row['far']:g}: {row['tar']:.4%} (threshold {row['threshold']:.3f}"
                     f"{'' if row['resolved'] else ', not resolved'})")
    dec = report["decision"]
    lines.append(f"threshold {dec['threshold']:.4f} for FAR {dec['far']:g}: genuine accepted "
                 f"{_pct(d['genuine_accepted'])}, as another label {_pct(d['genuine_accepted_as_another_label'])}, "
                 f"impostors accepted {_pct(d['impostor_accepted'])}; pattern read right "
                 f"{report['pattern_accuracy']:.2%}")
    lines.append(f"  FAR {_pct(dec['far_measured'])} (95% bounds {_pct(dec['far_bounds'][0])} - "
                 f"{_pct(dec['far_bounds'][1])}), FRR {_pct(dec['frr_measured'])} (95% bounds "
                 f"{_pct(dec['frr_bounds'][0])} - {_pct(dec['frr_bounds'][1])}), per comparison")
    q = report.get("per_query")
    if q:
        fit = dec["tail"]
        sizes = ", ".join(f"{s['far_per_query']:.3g} at {s['labels']:,} labels ({s['shards']} shards)"
                          for s in q["shards"])
        lines.append(f"per query at threshold {q['threshold']:.4f}: per comparison {q['pair_far']:.3g} "
                     f"({q['method']}: {fit['pairs']:,} impostor comparisons, generalized Pareto fit to the top "
                     f"{fit['fit_scores']:,}, {fit['fit_range'][0]:.3f}-{fit['fit_range'][1]:.3f}, shape "
                     f"{fit['shape']:.3f}); "
                     f"false accepts per query {sizes}")
        if "planned" in q:
            lines.append(f"  at the planned {q['planned']['labels_per_shard']:,} labels a shard: "
                         f"{q['planned']['far_per_query']:.3g} per query")
        if "query_far" in dec:
            lines.append(f"  threshold set for {dec['query_far']:g} per query at {dec['labels_per_shard']:,} labels a "
                         f"shard ({dec['far']:.3g} per comparison)")
    lines.append(f"time per query: model {t['model_ms']['median']:.2f} ms, search {t['search_ms']['median']:.3f} ms "
                 "(medians)")
    if "warning" in report:
        lines.append("WARNING: " + report["warning"])
    if "too_few_pairs" in report:
        lines.append("TOO FEW PAIRS to write this threshold: " + report["too_few_pairs"])
    for reason in report.get("refused", []):
        lines.append("NOT TO BE SIGNED: " + reason)
    lines.append("threshold written into the bundle (re-signed)" if report["written"]
                 else "threshold NOT written (give --key to write it and re-sign)")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}"
