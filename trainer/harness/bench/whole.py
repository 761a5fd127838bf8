"""The whole database as one index, searched with the genuine photos' own fingerprints.

The paper searched all 4,155,600 enrolled vectors when it did not classify first. The device
without classification searches every pattern's shard in turn (`experiment`, "every shard");
here the same vectors go into one inverted-file index, planned and built by enrollment's
code (`trainer.index_build`) for the same memory budget a vector, opened memory-mapped as
the device opens shards, and searched one query at a time with the fingerprints of genuine
photos as the device computes them (its segmentation and model).

Random vectors are the worst case for an inverted file (`scaling`, `tools/bench_search.py`);
real fingerprints cluster by label (a label's augmented copies sit together), which is what
this measures: recall@1 of exact search, by label, and the time a query, for each nprobe
up to the first that reaches the recall enrollment tunes shards to. Approximate search can only lower a query's
best score, so it never turns a rejected counterfeit into an accepted one: only genuine
queries are at stake.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_app.atomic_write import replacing
from edge_app.bundle_format import Manifest
from edge_app.errors import PufError
from edge_app.shards import read_index
from trainer.enroll import DEFAULT_RECALL, index_budget_per_vector
from trainer.harness.bench import queries
from trainer.harness.bench.database import ID_BYTES, Labels, database_rows, key, label_of, model_key
from trainer.harness.bench.plan import BenchPlan
from trainer.harness.bench.scaling import per_query_ms, rss_mb
from trainer.index_build import NPROBES, build_index, exact_top1, plan_index


def genuine_fingerprints(verifier, labels: Labels, photos: list[queries.Photo]) -> tuple[np.ndarray, np.ndarray]:
    """The device's fingerprints of the genuine photos it can cut, and each one's label number."""
    place = {label: i for i, label in enumerate(labels.ids)}
    fingerprints, owners = [], []
    for photo in tqdm(photos, desc="whole index: query fingerprints", unit="photo"):
        cut = queries.device_crop(verifier, queries.read_photo(photo), photo.corners_px)
        if cut is not None:
            fingerprints.append(queries.best_lookup(verifier, *cut).embedding)
            owners.append(place[photo.label_id])
    d = verifier.bundle.embedding_dim
    return np.asarray(fingerprints, np.float32).reshape(-1, d), np.asarray(owners, np.int64)


def run(plan: BenchPlan, labels: Labels, real: np.ndarray, verifier, photos: list[queries.Photo], bundle: Path,
        cache: Path, memory_budget_mb: float) -> dict:
    """Build (or reuse) the one index, then sweep nprobe on the genuine photos' fingerprints up to
    the recall enrollment tunes shards to."""
    import faiss

    target = DEFAULT_RECALL
    vectors = np.ascontiguousarray(np.concatenate(list(database_rows(plan, real))), np.float32)
    n, d = vectors.shape
    index_plan = plan_index(n, d, index_budget_per_vector(Manifest.read(bundle), memory_budget_mb, n, ID_BYTES))
    if index_plan.kind == "ivf_pq_sq8":  # a bundle's shard kind: its SQ8 rows are a file beside the index
        raise PufError(f"the whole-index comparison builds one Faiss file, and {memory_budget_mb} MB plans "
                       f"{index_plan.kind} for {n:,} vectors (PQ codes and a row file): raise --memory-mb")
    name = key(model_key(bundle), plan.augmented, plan.vectors, plan.seed, labels.ids, index_plan.to_dict())
    path = Path(cache) / f"whole-{name}.faiss"
    build_s = None
    if not path.exists():
        tqdm.write(f"whole index: training and filling {index_plan.factory} with {n:,} vectors "
                   f"(minutes at the paper's size)", file=sys.stderr)
        t = time.perf_counter()
        index = build_index(vectors, index_plan, plan.seed)
        build_s = round(time.perf_counter() - t, 1)
        with replacing(path) as tmp:
            faiss.write_index(index, str(tmp))
        del index
    fingerprints, owners = genuine_fingerprints(verifier, labels, photos)
    faiss.omp_set_num_threads(2)
    truth = label_of(exact_top1(vectors, fingerprints), plan)
    exact_ms = []
    for q in fingerprints[:5]:
        t = time.perf_counter()
        exact_top1(vectors, q[None])
        exact_ms.append((time.perf_counter() - t) * 1000)
    del vectors
    before = rss_mb()
    index = read_index(path)
    ivf = faiss.try_extract_index_ivf(index)
    sweep = []
    for nprobe in [p for p in NPROBES if p <= ivf.nlist] if ivf is not None else [None]:
        if ivf is not None and nprobe is not None:
            ivf.nprobe = nprobe
        scores, rows = index.search(fingerprints, 1)
        found = label_of(rows[:, 0], plan)
        times = per_query_ms(index, fingerprints[:500])
        recall = round(float(np.mean(found == truth)), 5)
        sweep.append({"nprobe": nprobe, "recall_at_1": recall,
                      "own_label_above_threshold": round(float(np.mean((found == owners)
                                                                       & (scores[:, 0] >= verifier.threshold))), 5),
                      "ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)})
        if recall >= target:
            break
    return {"vectors": n, "index": index_plan.factory, "bytes": path.stat().st_size,
            "bytes_per_vector": round(path.stat().st_size / n, 1), "build_s": build_s,
            "queries": len(fingerprints), "photos": len(photos), "exact_ms": round(float(np.median(exact_ms)), 1),
            "exact_agrees_with_own_label": round(float(np.mean(truth == owners)), 5),
            "rss_mb_after_queries": round(rss_mb() - before, 1), "target_recall": target,
            "sweep": sweep, "chosen": sweep[-1]}
