"""Which Faiss index a shard gets, building it, and tuning its search to a recall target.

Fingerprints are L2-normalised, so every index searches by inner product (= cosine).

* Small shards (at most `exact_max` vectors) are exact: ``Flat``, or ``SQ8`` (8 bits a
  dimension, scores within about 1e-3) when the memory budget cannot afford 4 bytes a
  dimension.
* Larger shards are inverted files (IVF: the nearest `nprobe` of `nlist` cells are
  scanned) holding the most accurate codes the budget affords: ``SQ8`` (d bytes),
  ``PQm`` re-ranked from SQ8 rows on storage (kind ivf_pq_sq8, `edge_app.shards.Reranked`:
  m bytes in memory, scores as SQ8's), ``SQ4`` (d/2 bytes) or ``PQm`` (m bytes), plus 8
  bytes of id a vector. HNSW is not used:
  its graph costs 2 x M x 4 bytes a vector on top of the codes (128 B at M=16, more than
  an SQ4 code of a 128-d embedding), Faiss cannot memory-map it, and it has no cheap
  append; an IVF shard is memory-mapped as it lies on disk and new labels are appended
  to its lists without retraining.

`nprobe` is tuned after every build or append: the smallest that gives recall@1 >=
`target_recall` of exact search on *genuine-like* queries, which are enrolled vectors
moved to a cosine of `genuine_cosine` from themselves (a re-capture that only just passes
the decision threshold: the hardest genuine query that matters). They move half along the
shard's own spread and half in a random direction (`SPREAD_SHARE`), as a re-capture does:
moved only at random they cross fewer cells than photos do, and nprobe came out too small
for real re-captures. Recall on random queries, the worst case, is measured at the same
nprobe and reported beside it.

An nprobe is chosen when the one-sided `CONFIDENCE` lower bound on its recall (Clopper-Pearson:
exact, never optimistic) reaches the target, not its point estimate: 1,000 queries all found
say little at a target of 0.999 (a recall of 0.997 finds all 1,000 one time in twenty), and an
nprobe so chosen found 0.997 of fresh queries. The bound needs about 3,000 queries found without
a miss at 0.999 (`tuning_queries`). A candidate nprobe's search stops as soon as its misses are
more than the bound allows, the queries smaller ones missed searched first, so the nprobes that
fail cost little.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np

from edge_app.errors import PufError
from edge_app.shards import Reranked, faiss_index, ivf_nlist
from edge_app.unit_vectors import moved_to_cosine, random_unit

EXACT_MAX = 5000  # shards up to this many vectors are searched exactly
ID_BYTES = 8  # an IVF list stores a 64-bit id beside each code
PQ_TRAIN_MIN = 256  # a PQ code's 8-bit sub-quantizers are k-means of 256 centroids: Faiss needs that many points
# Of a genuine-like query's move, the share of its energy along the shard's spread (`spread_directions`); the
# rest is random. Measured on the simulated factory's handheld re-captures of labels
# enrolled in 10 copies: 36-42% of a photo's deviation from its enrolled vector lies in the shard's top 32 of 256
# principal directions; half spread puts 41% there, a random move 12%, a move all along the spread 70%.
SPREAD_SHARE = 0.5
NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# rows a re-ranked (ivf_pq_sq8) search scores from storage: 4 gave the recall of 32 at 4,155,600 vectors
# (tools/results/bench_device_memory.md)
RERANK_CANDIDATES = 4
CONFIDENCE = 0.95  # of the lower bound on recall that an nprobe must reach the target with
MIN_TUNING_QUERIES = 1000
TUNING_CHUNK = 250  # genuine-like queries a candidate nprobe searches at a time, counting its misses


@dataclass(frozen=True)
class IndexPlan:
    kind: str  # "flat", "sq8", "ivf_sq8", "ivf_pq_sq8", "ivf_sq4" or "ivf_pq"
    factory: str  # the faiss.index_factory string
    bytes_per_vector: float  # codes and ids, not counting the label id map
    nlist: int = 0
    pq_m: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def index_plans(n: int, d: int, exact_max: int = EXACT_MAX) -> list[IndexPlan]:
    """Every index n vectors of d dimensions may get, the most accurate (and largest) first."""
    if n < 1 or d < 1:
        raise PufError(f"cannot plan an index for {n} vectors of {d} dimensions")
    plans = [IndexPlan("flat", "Flat", 4.0 * d), IndexPlan("sq8", "SQ8", float(d))] if n <= exact_max else []
    nlist = ivf_nlist(n)
    centroid_share = 4.0 * d * nlist / n  # the centroids are shared by the shard's vectors
    ivf = [("ivf_sq8", f"IVF{nlist},SQ8", d + ID_BYTES, 0)]
    rerank_m = next((m for m in (32, 16, 8) if d % m == 0 and m <= d // 4), 0)
    if rerank_m and n >= PQ_TRAIN_MIN:  # SQ8's scores from the PQ codes' memory; its rows stay on storage
        ivf.append(("ivf_pq_sq8", f"IVF{nlist},PQ{rerank_m}", rerank_m + ID_BYTES, rerank_m))
    ivf.append(("ivf_sq4", f"IVF{nlist},SQ4", math.ceil(d / 2) + ID_BYTES, 0))
    ivf += [("ivf_pq", f"IVF{nlist},PQ{m}", m + ID_BYTES, m)
            for m in (64, 48, 32, 24, 16, 8) if m < d / 2 and d % m == 0 and n >= PQ_TRAIN_MIN]
    return plans + [IndexPlan(kind, factory, size + centroid_share, nlist, m) for kind, factory, size, m in ivf]


def plan_index(n: int, d: int, budget_bytes_per_vector: float, exact_max: int = EXACT_MAX) -> IndexPlan:
    """The most accurate index for n vectors of d dimensions within the budget."""
    plans = index_plans(n, d, exact_max)
    for plan in plans:
        if plan.bytes_per_vector <= budget_bytes_per_vector:
            return plan
    raise PufError(f"no index fits {budget_bytes_per_vector:.0f} bytes a vector for {n} vectors of {d} "
                   f"dimensions (the smallest needs {plans[-1].bytes_per_vector:.0f}); raise the memory budget")


def sq8_bytes_per_vector(n: int, d: int, exact_max: int = EXACT_MAX) -> float:
    """The budget a vector at which n vectors get 8-bit codes (SQ8 or IVF-SQ8), whose
    scores stay within about 3e-3 of exact search."""
    return next(p.bytes_per_vector for p in index_plans(n, d, exact_max) if p.kind in ("sq8", "ivf_sq8"))


def build_index(vectors: np.ndarray, plan: IndexPlan, seed: int = 0):
    """Train (if the plan needs it) and fill an index with `vectors` (n, d) float32; for kind
    ivf_pq_sq8 a `Reranked` index, with the vectors' SQ8 codes in memory."""
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    if plan.kind == "ivf_pq_sq8":
        sq = sq8_codec(vectors.shape[1])
        sq.train(vectors)
        trained = faiss.vector_to_array(sq.trained).astype(np.float32)
        pq = build_index(vectors, IndexPlan("ivf_pq", plan.factory, plan.bytes_per_vector, plan.nlist, plan.pq_m), seed)
        return Reranked(pq, sq.compute_codes(vectors), trained[:pq.d], trained[pq.d:], RERANK_CANDIDATES)
    index = faiss.index_factory(vectors.shape[1], plan.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        # downcast: the concrete IVF class (faiss's stubs type the result as a plain Index)
        ivf = cast("faiss.IndexIVF", faiss.downcast_index(faiss.extract_index_ivf(index))) if plan.nlist else None
        if ivf is not None:
            ivf.cp.seed = seed
            ivf.cp.min_points_per_centroid = 1  # the plan already keeps >= 39 a cell
        if isinstance(ivf, faiss.IndexIVFPQ):
            # Hamming-order codes: unused here, and minutes of training (an attribute faiss's stubs lack)
            ivf.do_polysemous_training = False  # type: ignore[attr-defined]
        sample = vectors
        limit = max(64 * max(plan.nlist, 1), 50_000)  # k-means needs 30-256 points a cell
        if len(vectors) > limit:
            sample = vectors[np.random.default_rng(seed).choice(len(vectors), limit, replace=False)]
        index.train(sample)
    index.add(vectors)
    return index


def sq8_codec(d: int, trained: np.ndarray | None = None):
    """Faiss's 8-bit scalar quantizer of d dimensions, the codec of a `Reranked` index's rows:
    untrained, or with its ranges `trained` (each dimension's minimum, then its width)."""
    import faiss

    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    if trained is not None:
        faiss.copy_array_to_vector(np.asarray(trained, np.float32), sq.trained)
    return sq


def add_vectors(index, vectors: np.ndarray):
    """`index` with `vectors` appended (a `Reranked` one: their SQ8 codes in its range too)."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    if not isinstance(index, Reranked):
        index.add(vectors)
        return index
    sq = sq8_codec(index.d, np.concatenate([index.vmin, index.vdiff]))
    old = index.codes()
    index.index.add(vectors)
    return Reranked(index.index, np.concatenate([old, sq.compute_codes(vectors)]), index.vmin, index.vdiff,
                    index.candidates)


def write_index(index, path: Path) -> None:
    """Write `index` to `path` through Python's own file writes: a full disk is then an
    OSError (ENOSPC, EFBIG) that the bundle writer reports as such, where `faiss.write_index`
    to a file name raises a RuntimeError that says nothing of the disk."""
    import faiss

    with Path(path).open("wb") as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))  # type: ignore[attr-defined]  # not in its stubs


def index_kind(index) -> str:
    """The plan kind of a built index (from its type and codes)."""
    import faiss

    if isinstance(index, Reranked):
        return "ivf_pq_sq8"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    if isinstance(index, faiss.IndexScalarQuantizer):
        return "sq8"
    found = faiss.try_extract_index_ivf(index)
    ivf = faiss.downcast_index(found) if found is not None else None
    if isinstance(ivf, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8" if ivf.sq.qtype == faiss.ScalarQuantizer.QT_8bit else "ivf_sq4"
    if isinstance(ivf, faiss.IndexIVFPQ):
        return "ivf_pq"
    raise PufError(f"unexpected index type {type(index).__name__}")


def genuine_like(vectors: np.ndarray, count: int, cosine: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`count` queries, each an enrolled vector moved to `cosine` from itself, the move
    `SPREAD_SHARE` along the shard's spread and the rest random; and which (distinct rows
    while the shard has enough)."""
    rows = rng.choice(len(vectors), count, replace=False) if count <= len(vectors) \
        else rng.integers(len(vectors), size=count)  # more queries than vectors: each moved apart
    direction = (math.sqrt(SPREAD_SHARE) * _unit_rows(spread_directions(vectors, len(rows), rng))
                 + math.sqrt(1.0 - SPREAD_SHARE) * _unit_rows(rng.standard_normal((len(rows), vectors.shape[1]))))
    return moved_to_cosine(vectors[rows], cosine, rng, direction), rows


def spread_directions(vectors: np.ndarray, count: int, rng: np.random.Generator, mix: int = 16) -> np.ndarray:
    """`count` random directions distributed as the shard's own spread (each a Gaussian mix of
    `mix` centred enrolled vectors), so that none points at one enrolled vector in particular."""
    centre = vectors.mean(axis=0)
    picked = vectors[rng.integers(len(vectors), size=(count, mix))] - centre
    return np.einsum("cm,cmd->cd", rng.standard_normal((count, mix)), picked)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row of `x` scaled to length 1; a zero row (a shard of one vector has no spread) stays zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros(x.shape), where=norms > 0)


def exact_top1(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The row of `reference` nearest each query by inner product (no copy of `reference`)."""
    import faiss

    reference = np.ascontiguousarray(reference, np.float32)
    return faiss.knn(np.ascontiguousarray(queries, np.float32), reference, 1, faiss.METRIC_INNER_PRODUCT)[1][:, 0]


def tuning_queries(target_recall: float, confidence: float = CONFIDENCE) -> int:
    """How many genuine-like queries tuning draws: enough that all found puts recall's lower
    bound at the target (2,995 at 0.999), at least MIN_TUNING_QUERIES; a target of 1 cannot be
    shown by sampling, and gets the minimum (it is then met by no nprobe)."""
    if target_recall >= 1.0:
        return MIN_TUNING_QUERIES
    return max(MIN_TUNING_QUERIES, math.ceil(math.log(1.0 - confidence) / math.log(target_recall)))


def _misses_cdf(n: int, rate: float) -> np.ndarray:
    """P(at most m misses of n queries) for m = 0..n, each query missed with probability `rate`."""
    m = np.arange(n + 1)
    if rate <= 0.0:
        return np.ones(n + 1)
    if rate >= 1.0:
        return (m == n).astype(float)
    i = np.arange(1, n + 1)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - i + 1) / i))])
    return np.minimum(np.cumsum(np.exp(log_choose + m * math.log(rate) + (n - m) * math.log1p(-rate))), 1.0)


def allowed_misses(n: int, target_recall: float, confidence: float = CONFIDENCE) -> int:
    """The most misses of n queries at which recall's one-sided `confidence` Clopper-Pearson
    lower bound still reaches `target_recall`; -1 when none does (too few queries)."""
    return int(np.searchsorted(_misses_cdf(n, 1.0 - target_recall), 1.0 - confidence, side="right")) - 1


def recall_lower_bound(found: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided `confidence` Clopper-Pearson lower bound on recall, `found` of `n` queries found."""
    if found <= 0 or n <= 0:
        return 0.0
    low, high = 0.0, 1.0  # the miss rate, by bisection: P(at most n - found misses) = 1 - confidence
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if _misses_cdf(n, middle)[n - found] > 1.0 - confidence else (low, middle)
    return 1.0 - high


def tune(index, reference: np.ndarray, target_recall: float = 0.99, genuine_cosine: float = 0.5,
         queries: int | None = None, seed: int = 0, labels: np.ndarray | None = None,
         confidence: float = CONFIDENCE) -> dict:
    """Search parameters for `index` (holding `reference`, row i = id i), the recall@1 of
    exact search they give on genuine-like (`queries`, default `tuning_queries`) and on random
    queries with the lower bound the choice rests on, and how far its scores stray from exact
    ones on the genuine-like queries (`score_error`).

    With `labels` (the label of each row), a query is found when the index returns any row
    of the exact search's top label. That is what verification needs, and the only reachable
    target when a label is enrolled in several near-identical copies: the codes' rounding
    reorders the copies, so row-exact recall stays below target even scanning every cell."""
    import faiss

    rng = np.random.default_rng(seed)
    genuine, _ = genuine_like(reference, queries or tuning_queries(target_recall, confidence), genuine_cosine, rng)
    random = random_unit(min(len(genuine), 500), reference.shape[1], rng)
    owner = np.arange(len(reference)) if labels is None else np.asarray(labels)
    truth = owner[exact_top1(reference, genuine)]
    allowed = allowed_misses(len(genuine), target_recall, confidence)
    ivf = faiss.try_extract_index_ivf(faiss_index(index))
    params: dict = {}
    searched = None  # the chosen nprobe's search of the genuine-like queries
    if ivf is not None:
        chosen = ivf.nlist
        missed = np.zeros(0, np.int64)  # queries a smaller nprobe missed: searched first, they fail the next soonest
        for nprobe in (p for p in NPROBES if p < ivf.nlist and allowed >= 0):
            ivf.nprobe = nprobe
            searched, missed = _search_within(index, genuine, truth, owner, allowed, missed)
            if searched is not None:
                chosen = nprobe
                break
        ivf.nprobe = chosen
        params["nprobe"] = int(chosen)
    scores, rows = searched if searched is not None else _top1(index, genuine)
    found = int(np.sum(_found(rows, truth, owner)))
    random_rows = _top1(index, random)[1]
    return {
        "search": params,
        "recall_at_1": {"genuine_like": found / len(genuine),
                        "lower_bound": round(recall_lower_bound(found, len(genuine), confidence), 6),
                        "confidence": confidence,
                        "random": float(np.mean(_found(random_rows, owner[exact_top1(reference, random)], owner))),
                        "genuine_cosine": genuine_cosine, "target": target_recall,
                        "meets_target": len(genuine) - found <= allowed, "queries": len(genuine)},
        "score_error": _score_error(scores, rows, reference, genuine),
    }


def _top1(index, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, rows = index.search(queries, 1)
    return scores[:, 0], rows[:, 0]


def _found(rows: np.ndarray, truth: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Which searches returned a row of the exact search's top label (-1: nothing found)."""
    return (rows >= 0) & (owner[rows] == truth)


def _search_within(index, queries: np.ndarray, truth: np.ndarray, owner: np.ndarray, allowed: int,
                   first: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray]:
    """`index`'s top-1 scores and rows for `queries` if it misses at most `allowed` of them
    (else None), and which it missed: searched a chunk at a time, the queries `first` first,
    stopping at the first miss too many. Whether it passes does not depend on the order."""
    order = np.concatenate([first, np.setdiff1d(np.arange(len(queries)), first)])
    scores, rows = np.zeros(len(queries), np.float32), np.zeros(len(queries), np.int64)
    missed = []
    for start in range(0, len(order), TUNING_CHUNK):
        chunk = order[start:start + TUNING_CHUNK]
        scores[chunk], rows[chunk] = _top1(index, queries[chunk])
        missed.append(chunk[~_found(rows[chunk], truth[chunk], owner)])
        if sum(map(len, missed)) > allowed:
            return None, np.concatenate(missed)
    return (scores, rows), np.concatenate(missed)


def score_error(index, reference: np.ndarray, queries: np.ndarray) -> dict:
    """How far the scores `index` returns stray from exact ones: for each query, the top-1
    score the index gives minus the exact inner product of the query with that row of
    `reference` (for a label enrolled in several copies, a bound on its label's error). The
    decision threshold is calibrated on scores; an error upward (``max_up``) is what lifts a
    counterfeit over it."""
    return _score_error(*_top1(index, np.ascontiguousarray(queries, np.float32)), reference, queries)


def _score_error(scores: np.ndarray, rows: np.ndarray, reference: np.ndarray, queries: np.ndarray) -> dict:
    found = rows >= 0
    exact = np.einsum("ij,ij->i", queries[found], reference[rows[found]])
    error = scores[found] - exact
    if not len(error):
        return {"p99_abs": 0.0, "max_abs": 0.0, "max_up": 0.0, "queries": 0}
    return {"p99_abs": round(float(np.quantile(np.abs(error), 0.99)), 6),
            "max_abs": round(float(np.abs(error).max()), 6),
            "max_up": round(max(float(error.max()), 0.0), 6), "queries": int(found.sum())}
