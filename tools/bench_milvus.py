"""Fingerprints at scale in Milvus (Lite, or a server by --uri), beside the device's Faiss
shards, in one run.

    nice -n 19 .venv/bin/python tools/bench_milvus.py                 # 10^6 labels
    .venv/bin/python tools/bench_milvus.py --labels 100000            # a few minutes
    .venv/bin/python tools/bench_milvus.py --folder F --search-only   # again, on the store F holds
    tools/test_milvus.sh && .venv/bin/python tools/bench_milvus.py --uri http://127.0.0.1:19530 --baseline

1. Write: `--labels` random unit vectors of the shipped model's dimension (256), one a
   label, patterns dealt round the 44 classes, upserted into a Milvus Lite store through
   `trainer.fingerprint_store` in batches of `--batch` labels, as `puf enroll --milvus`
   writes them. Reported: labels a second, including Milvus's flush and HNSW index build.
2. Export: `trainer.region_export.export_region` turns the region into a bundle of the
   shipped model (`models/default`), 44 per-pattern Faiss shards, as `puf export-region`
   does (unsigned here: signing takes milliseconds). With `--baseline`, the export's read
   before its columnar pages (pymilvus's query iterator, rows as dicts, 4,000 a page) is
   timed beside the export's own read (`FingerprintStore.pages`, 16,384 rows a page decoded
   into numpy), both split by pattern (`trainer.pattern_spill`), in the same run.
3. Search, one query per call as a device or a central check searches: genuine-like
   queries (a label's vector moved to cosine `--cosine` from itself) in the label's pattern,
   by Milvus Lite (HNSW, partition + pattern filter) and by the exported bundle's shard
   (`edge_app.shards.ShardSet`, memory-mapped); recall@1 is "the label the query came from".

Random vectors are the worst case for both indexes (no clusters); see `tools/bench_search.py`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import RESULTS, save, started

from edge_app.bundle_format import Manifest
from edge_app.runtime import shipped_bundle
from edge_app.unit_vectors import random_unit
from trainer.fingerprint_store import FIELDS, FingerprintStore, Region, collection_name
from trainer.index_build import genuine_like
from trainer.pattern_spill import PatternSpill

REGION = Region("bench", "eu")


def label_id(i: int) -> str:
    return f"B{i // 2400:05d}-{i % 2400 // 12:04d}-{i % 12:02d}"


def vectors_of(start: int, count: int, d: int, seed: int) -> np.ndarray:
    """Labels start..start+count-1, the same vectors on every call (seeded by position)."""
    return random_unit(count, d, np.random.default_rng([seed, start]))


def write(store: FingerprintStore, name: str, n: int, d: int, classes: list[str], batch: int, seed: int) -> dict:
    t = time.perf_counter()
    for start in range(0, n, batch):
        count = min(batch, n - start)
        store.upsert(name, REGION, [label_id(i) for i in range(start, start + count)],
                     [classes[i % len(classes)] for i in range(start, start + count)],
                     vectors_of(start, count, d, seed))
    written_s = time.perf_counter() - t
    store.client.flush(name)
    assert store.count(name, REGION) == n
    total_s = time.perf_counter() - t
    return {"labels": n, "batch": batch, "upsert_s": round(written_s, 1), "with_flush_s": round(total_s, 1),
            "labels_per_s": round(n / total_s)}


def queries_of(n: int, d: int, batch: int, count: int, cosine: float, seed: int):
    """Genuine-like queries of `count` random labels: (queries, label rows)."""
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(n, count, replace=False))
    base = np.stack([vectors_of(r - r % batch, batch, d, seed)[r % batch] for r in rows])
    queries, picked = genuine_like(base, count, cosine, rng)
    return queries[np.argsort(picked)], rows  # genuine_like shuffles: back to the rows' order


def timed(search, queries: np.ndarray) -> tuple[list, list[float]]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t) * 1000)
    return found, times


def summary(times: list[float], found: list[str | None], truth: list[str]) -> dict:
    return {"median_ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
            "recall_at_1": float(np.mean([f == t for f, t in zip(found, truth, strict=True)]))}


def iterator_scan(store: FingerprintStore, name: str, classes: list[str], d: int, folder: Path) -> int:
    """The region read as exports read it before the columnar pages (`FingerprintStore.pages`):
    pymilvus's query iterator, 4,000 rows a page as dicts, each page's rows turned into columns
    and spilled by pattern as the export spills them (`trainer.pattern_spill`); the rows read."""
    rows, last = 0, ""
    folder.mkdir(parents=True, exist_ok=True)
    iterator = store.client.query_iterator(name, batch_size=4000, filter="", partition_names=[REGION.partition],
                                           output_fields=list(FIELDS))
    with PatternSpill(folder, classes, d) as spill:
        while batch := iterator.next():
            if min(row["key"] for row in batch) <= last:
                raise SystemExit(f"a page did not move past {last!r}")
            last = max(row["key"] for row in batch)
            rows += len(batch)
            spill.add([row["label_id"] for row in batch], [row["pattern"] for row in batch],
                      [row["copy"] for row in batch], np.asarray([row["vector"] for row in batch], np.float32))
    iterator.close()
    shutil.rmtree(folder)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="labels an upsert call (default 10000)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cosine", type=float, default=0.7, help="genuine-like queries' cosine (default 0.7)")
    parser.add_argument("--bundle", type=Path, default=shipped_bundle(), help="the model's bundle")
    parser.add_argument("--folder", type=Path, help="where the store and bundle go (default: a temporary folder)")
    parser.add_argument("--uri", help="a Milvus server (http://host:19530) instead of a Milvus Lite store in --folder")
    parser.add_argument("--written", action="store_true",
                        help="the store already holds the labels (an earlier run with the same --labels, --batch, "
                             "--seed): skip the write")
    parser.add_argument("--baseline", action="store_true",
                        help="also time the export's read before its columnar pages: pymilvus's query iterator, "
                             "4,000 rows a page as dicts")
    parser.add_argument("--no-export", action="store_true", help="skip the export and the Faiss side")
    parser.add_argument("--search-only", action="store_true",
                        help="search the store --folder already holds (written by an earlier run with the same "
                             "--labels, --batch, --seed): Milvus Lite builds its HNSW segments after the writes, "
                             "and searches run during that build wait for it")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_milvus.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from edge_app.shards import ShardSet
    from trainer.region_export import export_region

    manifest = Manifest.read(args.bundle)
    d, classes = int(manifest.embedding_dim or 0), list(manifest.pattern_classes or [])
    name = collection_name(manifest, manifest.model_format)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench_milvus_"))
    folder.mkdir(parents=True, exist_ok=True)
    uri = args.uri or str(folder / "fingerprints.db")
    engine = "milvus_server" if args.uri else "milvus_lite"
    result = started("bench_milvus.py") | {"engine": engine, "dim": d}
    with FingerprintStore(uri) as store:
        store.open_collection(name, d, create=not args.search_only)
        if not (args.search_only or args.written):
            result["write"] = write(store, name, args.labels, d, classes, args.batch, args.seed)
            print("write", result["write"], flush=True)
        if args.baseline:
            t = time.perf_counter()
            rows_read = iterator_scan(store, name, classes, d, folder / "baseline_spill")
            result["baseline_read_query_iterator"] = {"seconds": round(time.perf_counter() - t, 1), "rows": rows_read}
            print("baseline read", result["baseline_read_query_iterator"], flush=True)
        queries, rows = queries_of(args.labels, d, args.batch, args.queries, args.cosine, args.seed) \
            if args.queries else (np.zeros((0, d), np.float32), np.zeros(0, np.int64))
        truth = [label_id(int(r)) for r in rows]
        patterns = [classes[int(r) % len(classes)] for r in rows]
        pattern_of = iter(patterns)

        def milvus(q: np.ndarray) -> str | None:
            hit = store.search(name, REGION, next(pattern_of), q[None])[0]
            return hit[0] if hit else None

        if args.queries:
            store.search(name, REGION, patterns[0], queries[:1])  # warm
            found, times = timed(milvus, queries)
            result[f"search_{engine}"] = summary(times, found, truth)
            print(engine, result[f"search_{engine}"], flush=True)
    if not (args.no_export or args.search_only):
        out = folder / "bundle_eu"
        model = folder / "model"  # a copy: the export locks its source, with a file beside it
        if not model.exists():
            shutil.copytree(args.bundle, model)
        t = time.perf_counter()
        report = export_region(uri, model, out, REGION, progress=False)
        result["export"] = {"seconds": round(time.perf_counter() - t, 1), "read_s": report["read_seconds"],
                            "labels": report["labels"],
                            "bundle_mb": round(report["bundle_bytes"] / 1e6, 1), "shards": report["shards"]}
        print("export", result["export"], flush=True)
        exported = Manifest.read(out).shards
        if exported is None:
            raise SystemExit(f"the export {out} holds no shards")
        shards = ShardSet.load(out, exported)
        pattern_of = iter(patterns)

        def faiss_shard(q: np.ndarray) -> str | None:
            match = shards.search(q[None], [[next(pattern_of)]])[0]
            return match.label_id if match else None

        if args.queries:
            found, times = timed(faiss_shard, queries)
            result["search_faiss_shard"] = summary(times, found, truth)
            result["search_faiss_shard"]["kinds"] = sorted({e.extra["kind"] for e in exported.entries.values()})
            print("faiss shard", result["search_faiss_shard"], flush=True)
    save(result, args.out)


if __name__ == "__main__":
    main()
