"""Building a region's shards without the store: the time `puf export-region` spends after its
read, old code beside new in one run.

    nice -n 10 .venv/bin/python tools/bench_shard_build.py --baseline /work/main --shards 44

Each shard holds `--vectors` random unit vectors of the shipped model's dimension (256, one a
label, as tools/bench_milvus.py writes them to the store; 22,728 is a million labels' shard of 44
patterns) and is planned, built, tuned and written as enrollment and the region export do it
(`trainer.index_build.plan_index` under the budget that gives 8-bit codes, `build_index`, `tune`
with the label ids, `trainer.enroll.save_shard`), each step timed, and the CPU time of its
process (both threads: on a machine other jobs load, the wall time is mostly waiting for a
core). With `--baseline DIR` the same
shards are built by the code in DIR (a checkout of main) too, in a child process on the same
vectors, shard by shard in turn with this code's, so that both see the same load; the results
file holds both and what each decided (nprobe, recall, score error).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import RESULTS, save, started

from edge_app.bundle_format import read_manifest
from edge_app.runtime import shipped_bundle
from edge_app.unit_vectors import random_unit
from trainer.enroll import DEFAULT_RECALL as TARGET

DIM = 256
# the export tunes its shards at the bundle's threshold: the shipped one's
GENUINE_COSINE = float(read_manifest(shipped_bundle())["decision"]["threshold"])


def build_one(shard: int, n: int, seed: int, folder: Path) -> dict:
    """Shard `shard`'s vectors planned, built, tuned and written; each step's seconds and what tuning decided."""
    import faiss

    from trainer import index_build
    from trainer.enroll import save_shard

    vectors = random_unit(n, DIM, np.random.default_rng([seed, shard]))
    ids = np.array([f"B{shard:03d}-{i:07d}" for i in range(n)], dtype="S12")
    times = {}
    cpu = time.process_time()
    t = time.perf_counter()
    plan = index_build.plan_index(n, DIM, index_build.sq8_bytes_per_vector(n, DIM))
    index = index_build.build_index(vectors, plan, 0)
    times["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    tuned = index_build.tune(index, vectors, TARGET, GENUINE_COSINE, seed=0, labels=ids)
    faiss.extract_index_ivf(index).nprobe = tuned["search"]["nprobe"]
    times["tune_s"] = time.perf_counter() - t
    t = time.perf_counter()
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    written = save_shard(index, ids, shard, folder.joinpath)
    times["write_s"] = time.perf_counter() - t
    return {"shard": shard, "factory": plan.factory, **{k: round(v, 3) for k, v in times.items()},
            "seconds": round(sum(times.values()), 3), "cpu_s": round(time.process_time() - cpu, 3),
            "bytes": written["bytes"], **tuned}


def child(n: int, seed: int) -> int:
    """Build the shards whose numbers come on stdin, one JSON line each on stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        for line in sys.stdin:
            print(json.dumps(build_one(int(line), n, seed, Path(tmp))), flush=True)
    return 0


def summary(rows: list[dict]) -> dict:
    seconds = [r["seconds"] for r in rows]
    return {"shards": len(rows), "seconds_total": round(sum(seconds), 1),
            "cpu_seconds_total": round(sum(r["cpu_s"] for r in rows), 1),
            "seconds_a_shard_median": round(float(np.median(seconds)), 3),
            **{f"{step}_median": round(float(np.median([r[step] for r in rows])), 3)
               for step in ("build_s", "tune_s", "write_s")},
            "nprobe": [r["search"].get("nprobe") for r in rows],
            "recall_genuine_like_min": min(r["recall_at_1"]["genuine_like"] for r in rows),
            "tuning_queries": rows[0]["recall_at_1"]["queries"],
            "score_error_max_up": max(r["score_error"]["max_up"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=44)
    parser.add_argument("--vectors", type=int, default=22_728, help="vectors a shard (default: a million labels' 44)")
    parser.add_argument("--baseline", type=Path, help="a checkout of the old code, built in turn with this one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_shard_build.json")
    args = parser.parse_args(argv)
    if args.child:
        return child(args.vectors, args.seed)
    result = {**started("bench_shard_build.py"), "vectors_a_shard": args.vectors, "dim": DIM, "target": TARGET,
              "genuine_cosine": GENUINE_COSINE}
    codes = {"new": Path(__file__).resolve().parents[1], **({"old": args.baseline.resolve()} if args.baseline else {})}
    workers = {name: subprocess.Popen(
        [sys.executable, __file__, "--child", "--vectors", str(args.vectors), "--seed", str(args.seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(code)})
        for name, code in codes.items()}
    rows: dict[str, list[dict]] = {name: [] for name in codes}
    for shard in range(args.shards):
        for name, worker in workers.items():
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(f"{shard}\n")
            worker.stdin.flush()
            rows[name].append(json.loads(worker.stdout.readline()))
            print(f"shard {shard} {name}: {rows[name][-1]['seconds']} s, nprobe {rows[name][-1]['search']}",
                  file=sys.stderr, flush=True)
    for worker in workers.values():
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait()
    result.update({name: {"code": str(codes[name]), **summary(r), "rows": r} for name, r in rows.items()})
    save(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
