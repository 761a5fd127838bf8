"""Device memory of the search index: which Faiss index holds the paper's 4,155,600 vectors
within 0.5 GB, and a million labels of one vector each within 300 MB, at recall@1 >= 0.999
of exact search.

    .venv/bin/python tools/bench_device_memory.py --vectors CACHE/vectors-34c84bc3f6f0
    .venv/bin/python tools/bench_device_memory.py --vectors CACHE/vectors-34c84bc3f6f0 --quick   # small shards
    .venv/bin/python tools/bench_device_memory.py --vectors CACHE/vectors-15ebdc7929b6 --mmap-rerank

The vectors are real fingerprints: one vector per distinct simulated label, each the shipped
int8 model's embedding of its microscope crop, as `puf bench` caches them
(`--vectors CACHE/vectors-*`, .npy files of (n, 256) rows; the results file's came from a
`puf bench` run of 90,965 distinct labels, one vector each). One pattern's shard of the paper's database
holds 94,445 vectors (4,155,600 / 44); the real ones fill it first and the rest are
stand-ins: real vectors under one random rotation of the embedding space (the geometry of
real labels kept, near-orthogonal to the rest). A million labels are 44 shards of 22,728.

Queries are perturbed real vectors: an enrolled vector moved to cosine c from itself
(`trainer.index_build.genuine_like`), c = the shipped threshold (a re-capture that only just
passes) and 0.7 (one that fails it). Recall@1 is "the index returns exact search's top row".
Each candidate is built by enrollment's own code (`trainer.index_build.build_index`), its
nprobe tuned to the target on the threshold queries, written and opened as the device opens
it (`edge_app.shards.read_index`, memory-mapped). Per candidate: bytes on disk, the resident
memory the opened shard adds (on load, and after the queries), search time of one query alone
on one thread, median and p99, and the score error of the found row against its exact score.

The totals: the chosen index's shard file copied 44 times (distinct files, so the page cache
and the resident memory are real) and opened together in a fresh process as a device opens a
bundle, with the label id maps (13 bytes a vector); the resident memory after queries to
every shard is the device's figure. Recall does not change by copying: each copy holds the
same vectors.

`--mmap-rerank` measures one more design alone and adds it to the results file: IVF-PQ codes
scanned in memory for k' candidates, whose final scores come from their SQ8 rows in a separate
.npy read by row id through a memory mapping (`madvise(MADV_RANDOM)`), so that only the pages
the re-ranking reads are resident. Its totals start with the row files evicted from the page
cache (as after a reboot) and report how much of the resident memory is those files' pages,
and the same with the rows read by `os.pread` (kept out of the process's memory).

`--shipped` measures the shard kind enrollment ships from that design (ivf_pq_sq8,
`edge_app.shards.Reranked`): one shard built and tuned by `trainer.enroll.update_shard` under a
memory budget that plans it, written by `trainer.enroll.save_shard`, copied 44 times and opened
by `edge_app.shards.Shard.load` in a fresh process (rows read with `os.pread`, evicted from the
page cache first), at the paper's 4,155,600 vectors and at a million labels of one vector each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edge_app.bundle_format import Manifest
from edge_app.runtime import shipped_bundle
from edge_app.shards import ivf_nlist, read_index
from trainer.harness import paper
from trainer.harness.bench.scaling import per_query_ms, rss_mb
from trainer.index_build import IndexPlan, build_index, genuine_like, write_index

PAPER_SHARD = paper.VECTORS // paper.PATTERN_CLASSES  # 94,445
MILLION_SHARD = -(-1_000_000 // paper.PATTERN_CLASSES)  # 22,728
ID_MAP_BYTES = 13  # a label id such as B0001-0123-07 (numpy S13) a vector
TARGET = 0.999
NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
RESULTS = Path(__file__).resolve().parent / "results" / "bench_device_memory.json"


def candidates(nlist: int) -> list[tuple[str, str]]:
    """The codes enrollment can plan (`trainer.index_build.plan_index`), and IVF-PQ re-ranked by SQ8
    codes (Faiss's IndexRefine: the PQ scan finds REFINE_K candidates, their SQ8 codes, read from
    the memory-mapped file, give the order and the score). OPQ was tried and left out: its training
    did not end within 15 minutes for one 20,000-vector shard on this shared machine."""
    return [("ivf_sq8 (today)", f"IVF{nlist},SQ8"), ("ivf_sq4", f"IVF{nlist},SQ4"),
            ("ivf_pq64", f"IVF{nlist},PQ64"), ("ivf_pq64 + sq8 re-rank", f"IVF{nlist},PQ64,Refine(SQ8)"),
            ("ivf_pq32 + sq8 re-rank", f"IVF{nlist},PQ32,Refine(SQ8)")]


REFINE_K = 4  # candidates the PQ scan passes to the re-ranking
MAX_SCORE_ERROR = 0.005  # a verdict's score within this of exact: SQ8's own error is about 1e-3


def real_vectors(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.npy"))
    if not files:
        sys.exit(f"no .npy vectors in {folder}: run puf bench first, or pass --vectors")
    return np.concatenate([np.load(f) for f in files]).astype(np.float32)


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def shard_vectors(real: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """n vectors: the real ones first, then real ones under random rotations; and how many are real."""
    parts, count = [real[:n]], min(n, len(real))
    while count < n:
        extra = real[: n - count] @ random_rotation(real.shape[1], rng)
        parts.append(extra)
        count += len(extra)
    return np.ascontiguousarray(np.concatenate(parts)[:n]), min(n, len(real))


def exact(vectors: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    scores, rows = faiss.knn(queries, vectors, 1, faiss.METRIC_INNER_PRODUCT)
    return rows[:, 0], scores[:, 0]


def recall(index, queries: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(index.search(queries, 1)[1][:, 0] == truth))


def tune_nprobe(index, queries: np.ndarray, truth: np.ndarray) -> int:
    import faiss

    ivf = faiss.extract_index_ivf(index)
    for nprobe in (p for p in NPROBES if p <= ivf.nlist):
        ivf.nprobe = nprobe
        if recall(index, queries, truth) >= TARGET:
            return nprobe
    return ivf.nlist


def measure(name: str, factory: str, vectors: np.ndarray, queries: dict, folder: Path) -> dict:
    """One candidate on one shard: built, tuned, written, opened memory-mapped, searched."""
    import faiss

    t = time.perf_counter()
    nlist = ivf_nlist(len(vectors))
    built = build_index(vectors, IndexPlan(name, factory, 0.0, nlist))
    build_s = time.perf_counter() - t
    path = folder / f"{factory.replace(',', '_')}.faiss"
    refine_bytes = 0
    if "Refine" in factory:
        refine_bytes = len(vectors) * vectors.shape[1]  # the SQ8 codes, read only for re-ranking
        faiss.downcast_index(built).k_factor = REFINE_K  # saved with the index
    write_index(built, path)
    del built
    faiss.omp_set_num_threads(1)  # one query at a time on one core, as on the device
    before = rss_mb()
    index = read_index(path)
    on_load = rss_mb() - before
    ivf = faiss.extract_index_ivf(index)
    nprobe = tune_nprobe(index, *queries["threshold"][:2])
    ivf.nprobe = nprobe
    row = {"candidate": name, "factory": factory, "nprobe": nprobe, "build_s": round(build_s, 1),
           "file_bytes": path.stat().st_size, "bytes_per_vector": round(path.stat().st_size / len(vectors), 1),
           "scanned_bytes_per_vector": round((path.stat().st_size - refine_bytes) / len(vectors), 1),
           "refine_k": REFINE_K if refine_bytes else None}
    for kind, (q, truth, truth_scores) in queries.items():
        scores, rows = index.search(q, 1)
        hit = rows[:, 0] == truth
        row[f"recall_at_1_{kind}"] = round(float(np.mean(hit)), 5)
        if kind == "threshold":
            error = np.abs(scores[hit, 0] - truth_scores[hit])
            row["score_error"] = {"median": round(float(np.median(error)), 5),
                                  "p99": round(float(np.quantile(error, 0.99)), 5),
                                  "max": round(float(error.max()), 5)}
    times = per_query_ms(index, queries["threshold"][0])
    row.update({"ms_median": round(float(np.median(times)), 4), "ms_p99": round(float(np.quantile(times, 0.99)), 4),
                "rss_mb_on_load": round(on_load, 2), "rss_mb_after_queries": round(rss_mb() - before, 2)})
    print(f"  {name:18s} {factory:24s} {row['bytes_per_vector']:6.1f} B/vector  nprobe {nprobe:4d}  "
          f"recall {row['recall_at_1_threshold']:.4f} / {row['recall_at_1_cos0.7']:.4f}  "
          f"score err p99 {row['score_error']['p99']:.4f}  {row['ms_median']:.3f} ms (p99 {row['ms_p99']:.3f})  "
          f"RSS {row['rss_mb_after_queries']:.1f} MB", flush=True)
    return row


LOAD_CHILD = """
import json, sys, time, numpy as np
from pathlib import Path
from edge_app.shards import read_index, set_search_params
from trainer.harness.bench.scaling import rss_mb
import faiss
faiss.omp_set_num_threads(1)
paths, nprobe = [Path(p) for p in sys.argv[1].split(",")], int(sys.argv[2])
queries, mmap = np.load(sys.argv[3]), sys.argv[4] == "1"
before = rss_mb()
t = time.perf_counter()
shards = [(read_index(p, mmap), np.load(p.with_suffix(".ids.npy"), mmap_mode="r" if mmap else None)) for p in paths]
open_ms = (time.perf_counter() - t) * 1000
on_load = rss_mb() - before
for index, _ in shards:
    set_search_params(index, {"nprobe": nprobe})
times = []
for i, q in enumerate(queries):
    index, ids = shards[i % len(shards)]
    t = time.perf_counter()
    row = index.search(q[None], 1)[1][0, 0]
    bytes(ids[row])
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"open_ms": round(open_ms, 1), "rss_mb_on_load": round(on_load, 1),
                  "rss_mb_after_queries": round(rss_mb() - before, 1),
                  "ms_median": round(float(np.median(times)), 4), "ms_p99": round(float(np.quantile(times, 0.99)), 4)}))
"""


def total(name: str, shard_file: Path, n: int, nprobe: int, queries: np.ndarray, folder: Path) -> dict:
    """The chosen index at 44 shards: files copied, opened in a fresh process, searched."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.array([f"B{i // 10000:04d}-{i % 10000:04d}-00" for i in range(n)], dtype=f"S{ID_MAP_BYTES}")
    paths = []
    for s in range(paper.PATTERN_CLASSES):
        path = folder / f"p{s:02d}.faiss"
        shutil.copyfile(shard_file, path)
        np.save(folder / f"p{s:02d}.ids.npy", ids)
        paths.append(str(path))
    on_disk = sum(f.stat().st_size for f in folder.iterdir())
    query_file = folder / "queries.npy"
    np.save(query_file, queries)
    row: dict = {"index": name, "vectors": n * paper.PATTERN_CLASSES, "shards": paper.PATTERN_CLASSES,
                 "bytes_on_disk": on_disk - query_file.stat().st_size, "nprobe": nprobe}
    for mmap in (True, False):
        out = subprocess.run([sys.executable, "-c", LOAD_CHILD, ",".join(paths), str(nprobe), str(query_file),
                              "1" if mmap else "0"], capture_output=True, text=True, check=True)
        row["mmap" if mmap else "read"] = json.loads(out.stdout)
    shutil.rmtree(folder)
    print(f"  {name}: {row['vectors']:,} vectors, {row['bytes_on_disk'] / 1e6:,.0f} MB on disk; memory-mapped "
          f"RSS {row['mmap']['rss_mb_after_queries']} MB after queries, read whole "
          f"{row['read']['rss_mb_after_queries']} MB; {row['mmap']['ms_median']} ms median "
          f"(p99 {row['mmap']['ms_p99']})", flush=True)
    return row


def shard_queries(vectors: np.ndarray, real: int, count: int, threshold: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for kind, cosine in (("threshold", threshold), ("cos0.7", 0.7)):
        q, _ = genuine_like(vectors[:real], count, cosine, rng)
        out[kind] = (q, *exact(vectors, q))
    return out


def run_size(label: str, n: int, real: np.ndarray, args, threshold: float, work: Path) -> dict:
    import faiss

    vectors, real_count = shard_vectors(real, n, np.random.default_rng(args.seed))
    queries = shard_queries(vectors, real_count, args.queries, threshold, args.seed + 1)
    print(f"{label}: one shard of {n:,} vectors ({real_count:,} real), {args.queries} queries a kind", flush=True)
    folder = work / label
    folder.mkdir()
    rows = []
    for name, factory in candidates(ivf_nlist(n)):
        if args.only and not any(o in name for o in args.only):
            continue
        faiss.omp_set_num_threads(2)  # building
        rows.append(measure(name, factory, vectors, queries, folder))
    faiss.omp_set_num_threads(1)
    flat_times = per_query_ms(_flat(vectors), queries["threshold"][0][:200])
    return {"shard_vectors": n, "real_vectors": real_count, "rows": rows, "folder": folder,
            "exact_ms_median": round(float(np.median(flat_times)), 4), "queries": queries}


def _flat(vectors: np.ndarray):
    import faiss

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat


def smallest_meeting(rows: list[dict]) -> dict:
    """The index with the fewest bytes scanned a search among those that find what exact search
    finds (recall@1 >= TARGET) and score as SQ8 does (verdicts unchanged)."""
    meeting = [r for r in rows if r["recall_at_1_threshold"] >= TARGET and r["score_error"]["p99"] <= MAX_SCORE_ERROR]
    return min(meeting, key=lambda r: (r["scanned_bytes_per_vector"], r["ms_median"]))


# --- IVF-PQ scanned in memory, re-ranked from SQ8 rows in a memory-mapped file ---------------------

RERANK_PQ = (32, 64)  # PQ code bytes scanned a vector
RERANK_K = (4, 8, 16, 32)  # candidates re-ranked a query


def sq8_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faiss's SQ8 codes of `vectors` (n, d) uint8, and its per-dimension minimum and range:
    a row decodes as vmin + (code + 0.5) / 255 * vdiff, as `IndexScalarQuantizer` decodes it."""
    import faiss

    d = vectors.shape[1]
    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    sq.train(vectors)
    trained = faiss.vector_to_array(sq.trained).astype(np.float32)
    return sq.compute_codes(vectors), trained[:d], trained[d:]


def reranked(index, rows_file: np.ndarray, vmin: np.ndarray, vdiff: np.ndarray, q: np.ndarray, k: int
             ) -> tuple[float, int]:
    """The best of the index's k candidates for one query, scored from their SQ8 rows."""
    rows = index.search(q[None], k)[1][0]
    rows = rows[rows >= 0]
    decoded = vmin + (rows_file[rows].astype(np.float32) + 0.5) * (vdiff / 255.0)
    scores = decoded @ q
    best = int(np.argmax(scores))
    return float(scores[best]), int(rows[best])


def measure_rerank(vectors: np.ndarray, queries: dict, folder: Path) -> list[dict]:
    """IVF-PQm (m in RERANK_PQ) re-ranked from a memory-mapped SQ8 row file, k' in RERANK_K:
    nprobe tuned to TARGET on the threshold queries, recall and score error of the re-ranked
    verdict, one query's time alone."""
    import faiss

    codes, vmin, vdiff = sq8_rows(vectors)
    rows_path = folder / "rerank.sq8.npy"
    np.save(rows_path, codes)
    rows_file = np.load(rows_path, mmap_mode="r")
    nlist = ivf_nlist(len(vectors))
    out = []
    for m in RERANK_PQ:
        factory = f"IVF{nlist},PQ{m}"
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        built = build_index(vectors, IndexPlan("ivf_pq", factory, 0.0, nlist, m))
        build_s = time.perf_counter() - t
        path = folder / f"rerank_{factory.replace(',', '_')}.faiss"
        write_index(built, path)
        del built
        faiss.omp_set_num_threads(1)
        index = read_index(path)
        ivf = faiss.extract_index_ivf(index)
        for k in RERANK_K:
            q, truth, _ = queries["threshold"]
            nprobe = ivf.nlist
            for p in (p for p in NPROBES if p <= ivf.nlist):
                ivf.nprobe = p
                if np.mean(np.array([reranked(index, rows_file, vmin, vdiff, x, k)[1] for x in q]) == truth) >= TARGET:
                    nprobe = p
                    break
            ivf.nprobe = nprobe
            row = {"candidate": f"ivf_pq{m} + mmapped sq8 re-rank (k'={k})", "factory": factory, "refine_k": k,
                   "nprobe": nprobe, "build_s": round(build_s, 1), "index_bytes": path.stat().st_size,
                   "rerank_file_bytes": rows_path.stat().st_size,
                   "file_bytes": path.stat().st_size + rows_path.stat().st_size,
                   "scanned_bytes_per_vector": round(path.stat().st_size / len(vectors), 1),
                   "bytes_per_vector": round((path.stat().st_size + rows_path.stat().st_size) / len(vectors), 1)}
            for kind, (qs, truth, _) in queries.items():
                found = [reranked(index, rows_file, vmin, vdiff, x, k) for x in qs]
                scores, rows = np.array([s for s, _ in found]), np.array([r for _, r in found])
                row[f"recall_at_1_{kind}"] = round(float(np.mean(rows == truth)), 5)
                if kind == "threshold":
                    exact_of_found = np.einsum("ij,ij->i", qs, vectors[rows])
                    error = scores - exact_of_found  # against the exact score of the row the verdict names
                    row["score_error"] = {"median": round(float(np.median(np.abs(error))), 5),
                                          "p99": round(float(np.quantile(np.abs(error), 0.99)), 5),
                                          "max": round(float(np.abs(error).max()), 5),
                                          "max_up": round(max(float(error.max()), 0.0), 5)}
            times = []
            for x in queries["threshold"][0]:
                t = time.perf_counter()
                reranked(index, rows_file, vmin, vdiff, x, k)
                times.append((time.perf_counter() - t) * 1000)
            row.update({"ms_median": round(float(np.median(times)), 4),
                        "ms_p99": round(float(np.quantile(times, 0.99)), 4)})
            print(f"  {row['candidate']:40s} {row['scanned_bytes_per_vector']:6.1f} B/vector scanned  nprobe "
                  f"{nprobe:4d}  recall {row['recall_at_1_threshold']:.4f} / {row['recall_at_1_cos0.7']:.4f}  "
                  f"score err p99 {row['score_error']['p99']:.4f} max up {row['score_error']['max_up']:.4f}  "
                  f"{row['ms_median']:.3f} ms (p99 {row['ms_p99']:.3f})", flush=True)
            out.append(row)
        del index
    np.save(folder / "rerank.params.npy", np.stack([vmin, vdiff]))
    return out


RERANK_CHILD = """
import json, mmap, os, sys, time, numpy as np
from pathlib import Path
from edge_app.shards import read_index, set_search_params
from trainer.harness.bench.scaling import rss_mb
import faiss
faiss.omp_set_num_threads(1)
paths, nprobe, k = [Path(p) for p in sys.argv[1].split(",")], int(sys.argv[2]), int(sys.argv[3])
queries, mode = np.load(sys.argv[4]), sys.argv[5]  # "mmap", "read" (the index read whole) or "pread"
vmin, vdiff = np.load(sys.argv[6])
scale = vdiff / 255.0


def mapping_kb(suffix):
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(suffix)
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


before = rss_mb()
t = time.perf_counter()
shards = []
for p in paths:
    rows = np.load(p.with_suffix(".sq8.npy"), mmap_mode="r")
    rows._mmap.madvise(mmap.MADV_RANDOM)  # one 256-byte row a candidate: no read-ahead around it
    if mode == "pread":  # the rows read by system call: the page cache holds them, not the process
        rows = (os.open(p.with_suffix(".sq8.npy"), os.O_RDONLY), rows.offset, rows.shape[1])
    shards.append((read_index(p, mode != "read"), np.load(p.with_suffix(".ids.npy"), mmap_mode="r"), rows))
open_ms = (time.perf_counter() - t) * 1000
on_load = rss_mb() - before
for index, _, _ in shards:
    set_search_params(index, {"nprobe": nprobe})
times, marks = [], {}
for i, q in enumerate(queries):
    index, ids, rows_file = shards[i % len(shards)]
    t = time.perf_counter()
    rows = index.search(q[None], k)[1][0]
    rows = rows[rows >= 0]
    if mode == "pread":
        fd, offset, d = rows_file
        codes = np.frombuffer(b"".join(os.pread(fd, d, offset + int(r) * d) for r in rows), np.uint8).reshape(-1, d)
    else:
        codes = rows_file[rows]
    scores = (vmin + (codes.astype(np.float32) + 0.5) * scale) @ q
    bytes(ids[rows[int(np.argmax(scores))]])
    times.append((time.perf_counter() - t) * 1000)
    if i + 1 in (1000, len(queries)):
        marks[i + 1] = {"rss_mb": round(rss_mb() - before, 1),
                        "rerank_file_rss_mb": round(mapping_kb(".sq8.npy") / 1024, 1),
                        "index_rss_mb": round(mapping_kb(".faiss") / 1024, 1)}
print(json.dumps({"open_ms": round(open_ms, 1), "rss_mb_on_load": round(on_load, 1), "after_queries": marks,
                  "ms_median": round(float(np.median(times)), 4), "ms_p99": round(float(np.quantile(times, 0.99)), 4)}))
"""


def evict(path: Path) -> None:
    """Drop one file's pages from the page cache (written out first), as after a reboot."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rerank_total(row: dict, shard_folder: Path, n: int, queries: np.ndarray, folder: Path) -> dict:
    """The re-ranked candidate at 44 shards: index, id map and SQ8 row file copied per shard,
    opened in a fresh process (index memory-mapped, read whole; rows memory-mapped, read by
    pread), searched."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.array([f"B{i // 10000:04d}-{i % 10000:04d}-00" for i in range(n)], dtype=f"S{ID_MAP_BYTES}")
    source = shard_folder / f"rerank_{row['factory'].replace(',', '_')}.faiss"
    paths = []
    for s in range(paper.PATTERN_CLASSES):
        path = folder / f"p{s:02d}.faiss"
        shutil.copyfile(source, path)
        shutil.copyfile(shard_folder / "rerank.sq8.npy", folder / f"p{s:02d}.sq8.npy")
        np.save(folder / f"p{s:02d}.ids.npy", ids)
        paths.append(str(path))
    on_disk = sum(f.stat().st_size for f in folder.iterdir())
    query_file = folder / "queries.npy"
    np.save(query_file, queries)
    out = {"index": row["candidate"], "vectors": n * paper.PATTERN_CLASSES, "shards": paper.PATTERN_CLASSES,
           "bytes_on_disk": on_disk, "rerank_bytes_on_disk": (folder / "p00.sq8.npy").stat().st_size * len(paths),
           "nprobe": row["nprobe"], "refine_k": row["refine_k"], "queries": len(queries)}
    for mode in ("mmap", "read", "pread"):
        for path in paths:  # each run starts with the row files on storage, not in the page cache
            evict(Path(path).with_suffix(".sq8.npy"))
        done = subprocess.run([sys.executable, "-c", RERANK_CHILD, ",".join(paths), str(row["nprobe"]),
                               str(row["refine_k"]), str(query_file), mode,
                               str(shard_folder / "rerank.params.npy")], capture_output=True, text=True, check=True)
        name = {"mmap": "index_mmap", "read": "index_read_whole", "pread": "rows_by_pread"}[mode]
        out[name] = json.loads(done.stdout)
    shutil.rmtree(folder)
    print(f"  {row['candidate']}: {out['vectors']:,} vectors, {out['bytes_on_disk'] / 1e6:,.0f} MB on disk; "
          f"{json.dumps(out['index_mmap'])}; read whole {json.dumps(out['index_read_whole'])}; rows by pread "
          f"{json.dumps(out['rows_by_pread'])}", flush=True)
    return out


def run_rerank(args, threshold: float, real: np.ndarray) -> int:
    """Add the memory-mapped re-ranking candidates to the results file (the other rows kept)."""
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    sizes = [("paper", 20_000 if args.quick else PAPER_SHARD)]
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        for label, n in sizes:
            vectors, real_count = shard_vectors(real, n, np.random.default_rng(args.seed))
            queries = shard_queries(vectors, real_count, args.queries, threshold, args.seed + 1)
            print(f"{label}: one shard of {n:,} vectors ({real_count:,} real), {args.queries} queries a kind",
                  flush=True)
            folder = Path(tmp) / label
            folder.mkdir()
            rows = measure_rerank(vectors, queries, folder)
            meeting = [r for r in rows if r["recall_at_1_threshold"] >= TARGET
                       and r["score_error"]["max_up"] <= MAX_SCORE_ERROR]
            chosen = min(meeting, key=lambda r: (r["index_bytes"], r["refine_k"])) if meeting else None
            stream = np.concatenate([genuine_like(vectors[:real_count], args.queries, threshold,
                                                  np.random.default_rng(args.seed + 2 + i))[0] for i in range(5)])
            totals = [rerank_total(chosen, folder, n, stream, Path(tmp) / f"{label}-total")] if chosen else []
            result.setdefault(label, {})["mmapped_rerank"] = {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
                "command": f"python tools/bench_device_memory.py --vectors {args.vectors.name} --mmap-rerank"
                           + (" --quick" * args.quick),
                "shard_vectors": n, "real_vectors": real_count, "candidates": rows,
                "chosen": chosen["candidate"] if chosen else None, "totals": totals}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


SHIPPED_CHILD = """
import json, sys, time, numpy as np
from pathlib import Path
from edge_app.bundle_format import ShardEntry
from edge_app.shards import Shard
from trainer.harness.bench.scaling import rss_mb
import faiss
faiss.omp_set_num_threads(1)
folder, entries, queries = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), np.load(sys.argv[3])
before = rss_mb()
t = time.perf_counter()
shards = [Shard.load(folder, p, ShardEntry.from_dict(p, e, "bench")) for p, e in entries.items()]
open_ms = (time.perf_counter() - t) * 1000
on_load = rss_mb() - before
times, marks = [], {}
for i, q in enumerate(queries):
    shard = shards[i % len(shards)]
    t = time.perf_counter()
    shard.label_id(int(shard.search(q[None], 1)[1][0, 0]))
    times.append((time.perf_counter() - t) * 1000)
    if i + 1 in (1000, len(queries)):
        marks[i + 1] = round(rss_mb() - before, 1)
print(json.dumps({"open_ms": round(open_ms, 1), "rss_mb_on_load": round(on_load, 1), "rss_mb_after_queries": marks,
                  "ms_median": round(float(np.median(times)), 4), "ms_p99": round(float(np.quantile(times, 0.99)), 4)}))
"""


def shipped_size(n: int, real: np.ndarray, args, threshold: float, folder: Path) -> dict:
    """The shipped ivf_pq_sq8 kind at one shard of n vectors, then 44 copies opened as a device opens them."""
    import faiss

    from edge_app.bundle_format import ShardEntry
    from edge_app.shards import Shard
    from trainer.enroll import EnrollOptions, save_shard, update_shard

    vectors, real_count = shard_vectors(real, n, np.random.default_rng(args.seed))
    queries = shard_queries(vectors, real_count, args.queries, threshold, args.seed + 1)
    owner = np.arange(n) // args.copies  # the label of each row: --vectors holds a label's copies in a row
    ids = [f"B{o // 10000:04d}-{o % 10000:04d}-00" for o in owner.tolist()]
    faiss.omp_set_num_threads(2)  # building
    t = time.perf_counter()
    index, id_map, entry = update_shard(None, np.zeros(0, "S1"), vectors, ids, SHIPPED_BUDGET,
                                        EnrollOptions(target_recall=TARGET, seed=args.seed), threshold)
    build_s = time.perf_counter() - t
    (folder / "shards").mkdir(parents=True)
    written = {**save_shard(index, id_map, 0, folder.joinpath), **entry}
    faiss.omp_set_num_threads(1)
    shard = Shard.load(folder, "p00", ShardEntry.from_dict("p00", written, "bench"))
    row = {"kind": entry["kind"], "factory": entry["factory"], "shard_vectors": n, "real_vectors": real_count,
           "copies_a_label": args.copies, "recall_counted": "by row" if args.copies == 1 else "by label",
           "build_and_tune_s": round(build_s, 1), "search": entry["search"],
           "candidates": written["rows"]["candidates"], "enrollment_recall_at_1": entry["recall_at_1"],
           "enrollment_score_error": entry["score_error"],
           "index_bytes": (folder / written["index"]).stat().st_size,
           "rows_bytes": (folder / written["rows"]["file"]).stat().st_size}
    for kind, (q, truth, _) in queries.items():
        scores, rows = shard.search(q, 1)
        row[f"recall_at_1_{kind}"] = round(float(np.mean(owner[rows[:, 0]] == owner[truth])), 5)
        if kind == "threshold":
            error = scores[:, 0] - np.einsum("ij,ij->i", q, vectors[rows[:, 0]])
            row["score_error"] = {"p99": round(float(np.quantile(np.abs(error), 0.99)), 5),
                                  "max": round(float(np.abs(error).max()), 5),
                                  "max_up": round(max(float(error.max()), 0.0), 5)}
    del shard
    entries = {}
    for s in range(paper.PATTERN_CLASSES):  # distinct copies: the page cache and resident memory are real
        names = {key: f"shards/p{s:02d}.{suffix}" for key, suffix in (("index", "faiss"), ("ids", "ids.npy"))}
        for key, name in names.items():
            if s:
                shutil.copyfile(folder / written[key], folder / name)
        rows_name = f"shards/p{s:02d}.rows.npy"
        if s:
            shutil.copyfile(folder / written["rows"]["file"], folder / rows_name)
        entries[f"p{s:02d}"] = {**written, **names, "rows": {**written["rows"], "file": rows_name}}
        evict(folder / rows_name)
    stream = np.concatenate([genuine_like(vectors[:real_count], args.queries, threshold,
                                          np.random.default_rng(args.seed + 2 + i))[0] for i in range(5)])
    np.save(folder / "queries.npy", stream)
    (folder / "entries.json").write_text(json.dumps(entries))
    done = subprocess.run([sys.executable, "-c", SHIPPED_CHILD, str(folder), str(folder / "entries.json"),
                           str(folder / "queries.npy")], capture_output=True, text=True, check=True)
    row["totals"] = {"vectors": n * paper.PATTERN_CLASSES, "shards": paper.PATTERN_CLASSES,
                     "bytes_on_disk": sum(f.stat().st_size for f in (folder / "shards").iterdir()),
                     "rows_bytes_on_disk": row["rows_bytes"] * paper.PATTERN_CLASSES, "queries": len(stream),
                     **json.loads(done.stdout)}
    shutil.rmtree(folder)
    print(f"  {n:,} a shard: {json.dumps(row)}", flush=True)
    return row


SHIPPED_BUDGET = 100.0  # index bytes a vector: below IVF-SQ8 (275 B at 94,445 vectors), above IVF-PQ32's 51 B


def run_shipped(args, threshold: float, real: np.ndarray) -> int:
    """Add the shipped ivf_pq_sq8 kind's rows to the results file (the other rows kept)."""
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    sizes = [(label, n) for label, n in (("paper", 20_000 if args.quick else PAPER_SHARD),
                                         ("million", 10_000 if args.quick else MILLION_SHARD))
             if args.size in (label, "both")]
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        for label, n in sizes:
            start = os.getloadavg()
            row = shipped_size(n, real, args, threshold, Path(tmp) / label)
            result.setdefault(label, {})["shipped_ivf_pq_sq8"] = {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                            "load_average_start": start, "load_average_end": os.getloadavg()},
                "command": f"nice -n 10 python tools/bench_device_memory.py --vectors {args.vectors.name} --shipped"
                           f" --copies {args.copies} --size {label}" + (" --quick" * args.quick), **row}
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=Path, required=True,
                        help="real fingerprints: a puf bench cache's vectors-* folder of .npy files")
    parser.add_argument("--queries", type=int, default=2000, help="queries of each kind (default 2000)")
    parser.add_argument("--quick", action="store_true", help="20,000-vector shards: a minute")
    parser.add_argument("--only", nargs="*", help="candidates whose name holds one of these words")
    parser.add_argument("--mmap-rerank", action="store_true",
                        help="only IVF-PQ re-ranked from a memory-mapped SQ8 row file, added to --out's rows")
    parser.add_argument("--shipped", action="store_true",
                        help="only the shipped ivf_pq_sq8 shard kind, at both sizes, added to --out's rows")
    parser.add_argument("--copies", type=int, default=1,
                        help="with --shipped: consecutive vectors of --vectors that are copies of one label (a puf "
                             "bench cache of --augmented N holds N a label, in a row); recall and enrollment's tuning "
                             "then count by label, as verification needs (default 1: every vector its own label)")
    parser.add_argument("--size", choices=("paper", "million", "both"), default="both",
                        help="with --shipped: the paper's shard (94,445 vectors), a million labels' (22,728), or both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error(f"--copies must be at least 1, not {args.copies}")
    import faiss

    threshold = float(Manifest.read(shipped_bundle()).threshold)
    real = real_vectors(args.vectors)
    if args.mmap_rerank:
        return run_rerank(args, threshold, real)
    if args.shipped:
        return run_shipped(args, threshold, real)
    sizes = [("paper", 20_000 if args.quick else PAPER_SHARD), ("million", 10_000 if args.quick else MILLION_SHARD)]
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "faiss": faiss.__version__,
                    "load_average_start": os.getloadavg()},
        "vectors": f"{len(real):,} real fingerprints (distinct simulated labels, one vector each, the shipped int8 "
                   "model; puf bench's cache); a shard is filled past them with real vectors under a random "
                   "rotation (stand-ins)",
        "queries": f"perturbed real vectors at cosine {threshold:g} (the shipped threshold) and 0.7, "
                   f"{args.queries} each; recall@1 = the exact search's top row returned",
        "target_recall": TARGET, "id_map_bytes_per_vector": ID_MAP_BYTES, "threads_search": 1,
        "command": f"python tools/bench_device_memory.py --vectors {args.vectors.name}" + (" --quick" * args.quick),
    }
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        for label, n in sizes:
            size = run_size(label, n, real, args, threshold, Path(tmp))
            chosen = smallest_meeting(size["rows"])
            smallest = min((r for r in size["rows"] if r["recall_at_1_threshold"] >= TARGET),
                           key=lambda r: r["file_bytes"])  # recall met, scores let move
            today = next(r for r in size["rows"] if "today" in r["candidate"])
            q = size["queries"]["threshold"][0]
            totals = [total(r["candidate"], size["folder"] / f"{r['factory'].replace(',', '_')}.faiss", n,
                            r["nprobe"], q, Path(tmp) / f"{label}-total")
                      for r in {id(r): r for r in (today, smallest, chosen)}.values()]
            result[label] = {"shard_vectors": n, "real_vectors": size["real_vectors"], "candidates": size["rows"],
                             "exact_ms_median_one_shard": size["exact_ms_median"], "chosen": chosen["candidate"],
                             "smallest_meeting_recall": smallest["candidate"], "totals": totals}
    result["machine"]["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
