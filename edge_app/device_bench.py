"""`puf device bench`: the figures a device owner measures on the installed device and sends home.

Run where the device runs (a Raspberry Pi with the device extra; no checkout, no TensorFlow), it
measures three things and says on what:

* photo -> verdict: the self-test's photos (`edge_app.self_test`: the package's signed 12-label
  bundle) verified `repeat` times each, from the JPEG file to the verdict, through the same
  pipeline as `puf verify`; a photo whose verdict is not the one its name records stops the bench,
  since figures of a broken install mean nothing;
* search at the owner's size: a *synthetic* shard of `labels` random unit vectors of the bundle's
  dimension (random vectors: a timing and memory figure, not an accuracy one), an IVF-SQ8 index as
  enrollment builds under the default memory budget, written to a temporary file and opened
  memory-mapped as the device opens a bundle's shards; queries are stored vectors moved to cosine
  0.83 from themselves, searched one at a time;
* memory: the process's resident set (RSS) before and after opening the shard and after the
  queries, and its peak; the machine: CPU model, cores, memory, OS, Python and library versions
  (`/proc/cpuinfo`, `/proc/device-tree/model` on a Pi, `platform`).

Nothing is estimated: every figure printed was measured by this run on this machine.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_app.bundle_format import Manifest
from edge_app.errors import PufError
from edge_app.segment import load_image
from edge_app.self_test import SELFTEST, expected, self_test
from edge_app.shards import ivf_nlist, read_index, set_search_params
from edge_app.unit_vectors import moved_to_cosine, random_unit
from edge_app.versions import versions

MIN_LABELS = 1_000  # below this a shard is searched exactly, and its time is noise
MAX_LABELS = 20_000_000  # 5 GB of codes: beyond any device
GENUINE_COSINE = 0.83  # a re-capture that just passes the shipped threshold (0.834155)
CHUNK = 100_000  # vectors made and added at a time: memory stays bounded whatever --labels


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak (VmHWM), MB; NaN where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
    except (OSError, StopIteration):
        return math.nan


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def machine() -> dict:
    """What the figures were measured on."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    meminfo = _read("/proc/meminfo") or ""
    total_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), None)
    return {
        "model": _read("/proc/device-tree/model"),  # "Raspberry Pi 4 Model B Rev 1.4" on a Pi
        "cpu": fields.get("model name") or fields.get("hardware") or platform.processor() or None,
        "cpus": os.cpu_count(),
        "memory_mb": round(total_kb / 1024) if total_kb else None,
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libraries": versions(),
    }


def _summary(times: list[float]) -> dict:
    return {"n": len(times), "median": round(float(np.median(times)), 3),
            "p99": round(float(np.quantile(times, 0.99)), 3)}


def photo_times(repeat: int, folder: Path = SELFTEST) -> dict:
    """Photo file -> verdict on the self-test photos, `repeat` passes; the verdicts' own split."""
    checks, verifier = self_test(folder)  # the first pass: loads the model, checks the verdicts
    failed = [c.photo for c in checks if not c.passed]
    if failed:
        raise PufError(f"the self-test photos {failed} did not give their expected verdicts: this install is "
                       "broken (run puf verify --self-test), so no figure is measured")
    photos = sorted((folder / "photos").glob("*.jpg"))
    wall: list[float] = []
    parts: dict[str, list[float]] = {}
    for _ in range(repeat):
        for photo in photos:
            start = time.perf_counter()
            verdicts = verifier.verify_image(load_image(photo), photo.name)
            wall.append((time.perf_counter() - start) * 1000)
            if [v.verdict for v in verdicts] != [expected(photo)[0]]:
                raise PufError(f"{photo.name}: the verdict changed between runs ({verdicts[0].verdict})")
            for name, ms in verdicts[0].timings_ms.items():
                parts.setdefault(name, []).append(ms)
    return {"photos": len(photos), "repeat": repeat, "photo_to_verdict_ms": _summary(wall),
            "verdict_timings_ms": {name: _summary(v) for name, v in parts.items()}}


def available_mb() -> float:
    """Memory this process may still take, MB: the kernel's MemAvailable, or less under an
    address-space limit (ulimit -v); infinite where neither is known."""
    meminfo = _read("/proc/meminfo") or ""
    found = [int(line.split()[1]) / 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")]
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        found.append(limit / 2**20 - (_vm_size_mb() or 0))
    return min(found, default=math.inf)


def _vm_size_mb() -> float | None:
    value = rss_mb("VmSize")
    return None if math.isnan(value) else value


def check_labels(labels: int, d: int) -> None:
    """Refuse a shard size out of range, or one whose index would not fit in memory while it
    is built (its codes and ids, before it is written), before any work starts."""
    if not MIN_LABELS <= labels <= MAX_LABELS:
        raise PufError(f"--labels {labels}: give {MIN_LABELS:,} to {MAX_LABELS:,} (below {MIN_LABELS:,} a shard "
                       "is searched exactly)")
    needed = labels * (d + 8) / 2**20 + 2 * CHUNK * d * 4 / 2**20
    free = available_mb()
    if needed > 0.8 * free:
        raise PufError(f"--labels {labels:,}: the synthetic shard needs about {needed:,.0f} MB while it is built, and "
                       f"this device has {free:,.0f} MB available; give fewer labels")


def synthetic_search(labels: int, d: int, queries: int, nprobe: int, seed: int = 0) -> dict:
    """Search time and memory of one synthetic shard of `labels` random unit vectors."""
    import faiss

    check_labels(labels, d)
    rng = np.random.default_rng(seed)
    nlist = ivf_nlist(labels)
    start = time.perf_counter()
    index = faiss.index_factory(d, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.train(random_unit(min(labels, 64 * nlist), d, rng))
    kept = []  # the vectors the queries are made from
    for first in range(0, labels, CHUNK):
        chunk = random_unit(min(CHUNK, labels - first), d, rng)
        index.add(chunk)
        kept.append(chunk[: max(1, queries * len(chunk) // labels)])
    build_s = time.perf_counter() - start
    base = np.concatenate(kept)[:queries]
    probes = moved_to_cosine(base, GENUINE_COSINE, rng)
    with tempfile.TemporaryDirectory(prefix="puf-bench-") as tmp:
        path = Path(tmp) / "synthetic.faiss"
        faiss.write_index(index, str(path))
        file_bytes = path.stat().st_size
        del index
        before = rss_mb()
        shard = read_index(path)
        on_load = rss_mb() - before
        set_search_params(shard, {"nprobe": nprobe})
        times = []
        for q in probes:
            t = time.perf_counter()
            shard.search(q[None], 1)
            times.append((time.perf_counter() - t) * 1000)
        after = rss_mb() - before
        del shard
    return {"labels": labels, "vectors": "synthetic: random unit vectors (timing and memory, not accuracy)",
            "index": f"IVF{nlist},SQ8, memory-mapped", "nprobe": nprobe, "dim": d, "build_s": round(build_s, 1),
            "file_mb": round(file_bytes / 1e6, 1), "bytes_per_label": round(file_bytes / labels, 1),
            "rss_mb_on_open": round(on_load, 1), "rss_mb_after_queries": round(after, 1),
            "search_ms": _summary(times)}


def device_bench(labels: int, repeat: int = 20, queries: int = 1000, nprobe: int = 8) -> dict:
    """Every figure of `puf device bench`, with the machine they were measured on."""
    d = int(Manifest.read(SELFTEST / "bundle").embedding_dim or 0)
    check_labels(labels, d)  # before minutes of work
    start_rss = rss_mb()
    photos = photo_times(repeat)
    search = synthetic_search(labels, d, queries, nprobe)
    return {"machine": machine(), "photo_to_verdict": photos, "search": search,
            "memory_mb": {"rss_at_start": round(start_rss, 1), "rss_at_end": round(rss_mb(), 1),
                          "peak_rss": round(rss_mb("VmHWM"), 1)},
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def describe(report: dict) -> str:
    """The report as a table for people (``--json`` gives it whole)."""
    m, p, s, mem = report["machine"], report["photo_to_verdict"], report["search"], report["memory_mb"]
    wall = p["photo_to_verdict_ms"]
    rows = [("device", m["model"] or "(no /proc/device-tree/model: not a Raspberry Pi)"),
            ("CPU", f"{m['cpu']}, {m['cpus']} cores"), ("memory", f"{m['memory_mb']} MB"), ("OS", m["os"]),
            ("Python", m["python"]),
            ("photo -> verdict", f"{wall['median']} ms median, p99 {wall['p99']} ({p['photos']} self-test photos "
                                 f"x {p['repeat']})")]
    rows += [(f"  {name}", f"{t['median']} ms median, p99 {t['p99']}") for name, t in p["verdict_timings_ms"].items()]
    rows += [("search", f"{s['search_ms']['median']} ms median, p99 {s['search_ms']['p99']} ({s['labels']:,} "
                        f"synthetic labels, {s['index']}, nprobe {s['nprobe']})"),
             ("shard memory", f"{s['file_mb']} MB file; RSS +{s['rss_mb_on_open']} MB on open, "
                              f"+{s['rss_mb_after_queries']} MB after {s['search_ms']['n']} queries"),
             ("process memory", f"RSS {mem['rss_at_end']} MB at the end, peak {mem['peak_rss']} MB"),
             ("load average", ", ".join(str(v) for v in report["load_average"]))]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
