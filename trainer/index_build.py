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
        sq = faiss.ScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit)
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


def add_vectors(index, vectors: np.ndarray):
    """`index` with `vectors` appended (a `Reranked` one: their SQ8 codes in its range too)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    if not isinstance(index, Reranked):
        index.add(vectors)
        return index
    sq = faiss.ScalarQuantizer(index.d, faiss.ScalarQuantizer.QT_8bit)
    faiss.copy_array_to_vector(np.concatenate([index.vmin, index.vdiff]), sq.trained)
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
    `SPREAD_SHARE` along the shard's spread and the rest random; and which."""
    rows = rng.choice(len(vectors), min(count, len(vectors)), replace=False)
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


def tune(index, reference: np.ndarray, target_recall: float = 0.99, genuine_cosine: float = 0.5,
         queries: int = 1000, seed: int = 0, labels: np.ndarray | None = None) -> dict:
    """Search parameters for `index` (holding `reference`, row i = id i), the recall@1 of
    exact search they give on genuine-like and on random queries, and how far its scores
    stray from exact ones on the genuine-like queries (`score_error`).

    With `labels` (the label of each row), a query is found when the index returns any row
    of the exact search's top label. That is what verification needs, and the only reachable
    target when a label is enrolled in several near-identical copies: the codes' rounding
    reorders the copies, so row-exact recall stays below target even scanning every cell."""
    import faiss

    rng = np.random.default_rng(seed)
    genuine, _ = genuine_like(reference, queries, genuine_cosine, rng)
    random = random_unit(min(queries, 500), reference.shape[1], rng)
    truth_genuine = exact_top1(reference, genuine)
    truth_random = exact_top1(reference, random)
    owner = np.arange(len(reference)) if labels is None else np.asarray(labels)

    def recall(q: np.ndarray, truth: np.ndarray) -> float:
        return float(np.mean(owner[index.search(q, 1)[1][:, 0]] == owner[truth]))

    ivf = faiss.try_extract_index_ivf(faiss_index(index))
    params: dict = {}
    if ivf is not None:
        chosen = ivf.nlist
        for nprobe in (p for p in NPROBES if p < ivf.nlist):
            ivf.nprobe = nprobe
            if recall(genuine, truth_genuine) >= target_recall:
                chosen = nprobe
                break
        ivf.nprobe = chosen
        params["nprobe"] = int(chosen)
    reached = recall(genuine, truth_genuine)
    return {
        "search": params,
        "recall_at_1": {"genuine_like": reached, "random": recall(random, truth_random),
                        "genuine_cosine": genuine_cosine, "target": target_recall,
                        "meets_target": reached >= target_recall, "queries": len(genuine)},
        "score_error": score_error(index, reference, genuine),
    }


def score_error(index, reference: np.ndarray, queries: np.ndarray) -> dict:
    """How far the scores `index` returns stray from exact ones: for each query, the top-1
    score the index gives minus the exact inner product of the query with that row of
    `reference` (for a label enrolled in several copies, a bound on its label's error). The
    decision threshold is calibrated on scores; an error upward (``max_up``) is what lifts a
    counterfeit over it."""
    scores, rows = index.search(np.ascontiguousarray(queries, np.float32), 1)
    found = rows[:, 0] >= 0
    exact = np.einsum("ij,ij->i", queries[found], reference[rows[found, 0]])
    error = scores[found, 0] - exact
    if not len(error):
        return {"p99_abs": 0.0, "max_abs": 0.0, "max_up": 0.0, "queries": 0}
    return {"p99_abs": round(float(np.quantile(np.abs(error), 0.99)), 6),
            "max_abs": round(float(np.abs(error).max()), 6),
            "max_up": round(max(float(error.max()), 0.0), 6), "queries": int(found.sum())}
