"""Search time and memory from 10^4 to 10^7 enrolled vectors.

The vectors are random unit vectors of the shipped model's dimension (256): what distinct
labels look like to an index, and the worst case for approximate search (real fingerprints
cluster, which helps an IVF). They are generated in chunks from a seed, so 10^7 of them
(10 GB as float32) never sit in memory at once: the index is trained on a subsample and
filled chunk by chunk.

At each size n, two indexes as the device opens them (memory-mapped, `edge_app.shards`):

* one pattern's shard (n / 44 vectors): what a query searches with classification;
* the whole database as one index (n vectors): the paper's search without classification.

Both hold IVF-SQ8 codes (`trainer.index_build`: the paper-size memory budget a vector, so the
index type is the same at every size); their cells are capped at `MAX_NLIST` to keep the
10^7 build affordable here. `nprobe` is the smallest giving recall@1 >= 0.99 of exact search
on genuine-like queries (an enrolled vector moved to the decision threshold's cosine, as
enrollment tunes it); recall on random queries is reported beside it. Exact search is timed
where the float32 vectors fit comfortably in memory (`EXACT_MAX`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_app.errors import PufError
from edge_app.shards import read_index
from edge_app.unit_vectors import random_unit
from trainer.charts import loglog_png
from trainer.harness import paper
from trainer.index_build import NPROBES, genuine_like, plan_index

D = 256
SHARDS = 44
CHUNK = 250_000
MAX_NLIST = 4096
EXACT_MAX = 2_000_000  # 2 GB of float32
QUERIES = 300
BUDGET_BYTES = 1400e6 / paper.VECTORS - 16  # the paper-size bundle's budget a vector
# genuine-like queries at the threshold of the model shipped when the README's scaling figures were
# measured (sim-20261125)
GENUINE_COSINE = 0.7435


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def per_query_ms(index, queries: np.ndarray) -> list[float]:
    """Time of each query searched alone (as a device searches), ms."""
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 1)
        times.append((time.perf_counter() - t) * 1000)
    return times


def chunk(n: int, c: int, seed: int) -> np.ndarray:
    """Chunk c of a stream of n random unit vectors."""
    count = min(CHUNK, n - c * CHUNK)
    return random_unit(count, D, np.random.default_rng([seed, c]))


def chunks(n: int, seed: int):
    for c in range(-(-n // CHUNK)):
        yield c * CHUNK, chunk(n, c, seed)


def queries_for(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Genuine-like queries of enrolled vectors spread over the whole stream, and random ones."""
    rng = np.random.default_rng([seed, 0x9E])
    count = min(QUERIES, n)
    rows = np.sort(rng.choice(n, count, replace=False))
    base = np.concatenate([chunk(n, c, seed)[rows[rows // CHUNK == c] - c * CHUNK]
                           for c in np.unique(rows // CHUNK)])
    genuine, _ = genuine_like(base, count, GENUINE_COSINE, rng)
    return genuine, random_unit(count, D, rng)


def exact_top1(n: int, seed: int, queries: np.ndarray) -> np.ndarray:
    import faiss

    best_score = np.full(len(queries), -np.inf, np.float32)
    best_row = np.zeros(len(queries), np.int64)
    for start, x in chunks(n, seed):
        flat = faiss.IndexFlatIP(D)
        flat.add(x)
        scores, rows = flat.search(queries, 1)
        better = scores[:, 0] > best_score
        best_score[better], best_row[better] = scores[better, 0], rows[better, 0] + start
    return best_row


def measure(n: int, seed: int, folder: Path) -> dict:
    """Build, open memory-mapped, tune and time one index of n vectors."""
    import faiss

    plan = plan_index(n, D, BUDGET_BYTES)
    if plan.nlist > MAX_NLIST:
        plan = dataclasses.replace(plan, nlist=MAX_NLIST, factory=plan.factory.replace(f"IVF{plan.nlist}",
                                                                                       f"IVF{MAX_NLIST}"))
    t = time.perf_counter()
    index = faiss.index_factory(D, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        if plan.nlist:
            faiss.extract_index_ivf(index).cp.min_points_per_centroid = 1
        sample_n = min(n, 40 * max(plan.nlist, 1000))
        rng = np.random.default_rng([seed, 0x7A])
        sample = np.concatenate([x[rng.random(len(x)) < sample_n / n] for _, x in chunks(n, seed)])
        index.train(sample)
        del sample
    for _, x in chunks(n, seed):
        index.add(x)
    build_s = time.perf_counter() - t
    path = folder / f"index_{n}.faiss"
    faiss.write_index(index, str(path))
    del index
    genuine, random = queries_for(n, seed)
    truth_genuine, truth_random = exact_top1(n, seed, genuine), exact_top1(n, seed, random)
    before = rss_mb()
    index = read_index(path)
    size = path.stat().st_size
    row = {"n": n, "factory": plan.factory, "build_s": round(build_s, 1), "file_mb": round(size / 1e6, 1),
           "bytes_per_vector": round(size / n, 1)}
    ivf = faiss.try_extract_index_ivf(index)
    faiss.omp_set_num_threads(2)
    if ivf is not None:
        for nprobe in [p for p in NPROBES if p <= ivf.nlist]:
            ivf.nprobe = nprobe
            recall = float(np.mean(index.search(genuine, 1)[1][:, 0] == truth_genuine))
            if recall >= 0.99:
                break
        row["nprobe"] = int(ivf.nprobe)
    row["recall_genuine"] = float(np.mean(index.search(genuine, 1)[1][:, 0] == truth_genuine))
    row["recall_random"] = float(np.mean(index.search(random, 1)[1][:, 0] == truth_random))
    times = per_query_ms(index, genuine)
    row.update(ms=round(float(np.median(times)), 3), p99_ms=round(float(np.percentile(times, 99)), 3),
               rss_mb=round(rss_mb() - before, 1))
    del index
    path.unlink()
    if n <= EXACT_MAX:
        flat = faiss.IndexFlatIP(D)
        for _, x in chunks(n, seed):
            flat.add(x)
        row["exact_ms"] = round(float(np.median(per_query_ms(flat, genuine[:30]))), 3)
        row["exact_mb"] = round(n * D * 4 / 1e6, 1)
        del flat
    return row


def run(sizes: list[int], memory_mb: float, cache: Path, seed: int = 0) -> dict:
    """Per size: one pattern's shard (n / 44) and the whole database as one index."""
    if not sizes or min(sizes) < SHARDS * 100 or max(sizes) > 50_000_000:
        raise PufError(f"scaling sizes must lie in {SHARDS * 100:,}-50,000,000, got {sizes}")
    Path(cache).mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=cache, prefix="scaling.") as tmp:
        for n in tqdm(sorted(sizes), desc="scaling", unit="size"):
            shard = measure(max(n // SHARDS, 1), seed, Path(tmp))
            whole = measure(n, seed + 1, Path(tmp))
            rows.append({"n": n, "shard": shard, "whole": whole})
            tqdm.write(f"{n:>12,}: shard {shard['ms']:.3f} ms, whole {whole['ms']:.3f} ms, "
                       f"{whole['file_mb']:,.0f} MB", file=sys.stderr)
    return {"vectors": "random unit vectors, 256-d (the worst case for approximate search)",
            "index": f"IVF-SQ8 (cells capped at {MAX_NLIST}), memory-mapped; nprobe for recall@1 >= 0.99 at "
                     f"genuine cosine {GENUINE_COSINE}", "threads": 2, "cpus": os.cpu_count(),
            "exact_skipped_above": EXACT_MAX, "memory_budget_mb_at_paper_size": memory_mb, "rows": rows}


def table(result: dict) -> str:
    lines = [f"{result['vectors']}; {result['index']}; {result['threads']} threads, one query at a time", "",
             "| enrolled | shard (n/44) ms | nprobe | whole ms | nprobe | recall@1 genuine / random | exact ms "
             "| index MB | RSS after queries MB | build s |", "|" + " --- |" * 10]
    for row in result["rows"]:
        s, w = row["shard"], row["whole"]
        exact = f"{w['exact_ms']:.2f}" if "exact_ms" in w else "skipped (does not fit)"
        lines.append(f"| {row['n']:,} | {s['ms']:.3f} (p99 {s['p99_ms']:.2f}) | {s.get('nprobe', '-')} | "
                     f"{w['ms']:.3f} (p99 {w['p99_ms']:.2f}) | {w.get('nprobe', '-')} | "
                     f"{w['recall_genuine']:.3f} / {w['recall_random']:.3f} | {exact} | {w['file_mb']:,.0f} | "
                     f"{w['rss_mb']:,.0f} | {w['build_s']} |")
    return "\n".join(lines)


def pictures(result: dict, folder: Path) -> list[Path]:
    """Search time, memory and recall against database size: one unit a chart."""
    rows, folder = result["rows"], Path(folder)
    times = {"whole database, IVF-SQ8": [(r["n"], r["whole"]["ms"]) for r in rows],
             "one pattern's shard, n/44": [(r["n"], r["shard"]["ms"]) for r in rows],
             "exact search, whole": [(r["n"], r["whole"]["exact_ms"]) for r in rows if "exact_ms" in r["whole"]]}
    memory = {"index file": [(r["n"], r["whole"]["file_mb"]) for r in rows],
              "resident after queries": [(r["n"], r["whole"]["rss_mb"]) for r in rows]}
    recall = {"whole database, genuine-like queries": [(r["n"], r["whole"]["recall_genuine"]) for r in rows]}
    return [loglog_png(times, folder / "scaling_ms.png", f"search time, one query on {result['threads']} threads",
                       "enrolled vectors", "ms a query"),
            loglog_png(memory, folder / "scaling_mb.png", "memory of the whole-database index", "enrolled vectors",
                       "MB"),
            loglog_png(recall, folder / "scaling_recall.png", "recall@1 of exact search, at the nprobe chosen",
                       "enrolled vectors", "recall@1", log_y=False)]
