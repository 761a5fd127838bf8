"""`puf device bench`: run for real, as a device owner runs it, with only the device extra importable
and the trainer and the factory line absent; its bad inputs refused before any work."""

import json
import subprocess
import sys

import pytest

from tests.faults import limited
from tests.test_verbs import BLOCKED_RUN, ROOT, blocked_modules

# A fresh interpreter where nothing outside the core, the device extra and edge_app can be imported
# (BLOCKED_RUN's gate, with the trainer and the factory line blocked too), running the bench's module
# alone: what it imports, also while it runs, is the device's.
ALONE = BLOCKED_RUN.split("from edge_app.cli import main")[0] + """
from edge_app.device_bench import device_bench
report = device_bench(1000, repeat=1, queries=10)
ours = sorted({name.partition(".")[0] for name in sys.modules} & {"trainer", "fabrication", "tensorflow"})
print(ours, report["search"]["labels"])
"""


def device_puf(*argv: str) -> subprocess.CompletedProcess:
    """`puf ARGV` with only the core and the device extra importable, as on a device install."""
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, ",".join(sorted(blocked_modules(("device",)))),
                           *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_bench_module_imports_nothing_outside_edge_app():
    blocked = blocked_modules(("device",)) | {"trainer", "fabrication"}
    done = subprocess.run([sys.executable, "-c", ALONE, ",".join(sorted(blocked))], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["[]", "1000"]


def test_device_bench_measures_the_self_test_photos_and_a_synthetic_shard():
    done = device_puf("device", "bench", "--labels", "2000", "--repeat", "2", "--queries", "50", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    photos = report["photo_to_verdict"]
    assert photos["photos"] == 3 and photos["photo_to_verdict_ms"]["n"] == 6
    assert 0 < photos["photo_to_verdict_ms"]["median"] <= photos["photo_to_verdict_ms"]["p99"]
    assert set(photos["verdict_timings_ms"]) >= {"segment", "model", "search", "total"}
    search = report["search"]
    assert search["labels"] == 2000 and search["search_ms"]["n"] == 50
    assert search["vectors"].startswith("synthetic")
    # IVF-SQ8: one byte a dimension and an 8-byte id a label, plus the cells' centroids
    assert search["dim"] + 8 < search["bytes_per_label"] < search["dim"] + 8 + 4 * search["dim"] * 64 / 2000 + 1
    assert report["memory_mb"]["peak_rss"] >= report["memory_mb"]["rss_at_end"] > 0
    machine = report["machine"]
    assert machine["cpus"] >= 1 and machine["os"] and machine["python"]
    # no Raspberry Pi here: no model is claimed for it
    assert machine["model"] is None or "Raspberry" in machine["model"]


def test_device_bench_prints_a_table_for_people():
    done = device_puf("device", "bench", "--labels", "1000", "--repeat", "1", "--queries", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split("  ")[0].strip(): line for line in done.stdout.splitlines()}
    assert {"device", "CPU", "OS", "photo -> verdict", "search", "shard memory", "process memory"} <= set(lines)
    assert "1,000 synthetic labels" in lines["search"]


@pytest.mark.parametrize("argv, says", [
    (["--labels", "0"], "--labels"),
    (["--labels", "-5"], "--labels"),
    (["--labels", "many"], "--labels"),
    (["--labels", "999"], "give 1,000 to 20,000,000"),
    (["--labels", "20000001"], "give 1,000 to 20,000,000"),
    (["--repeat", "0"], "--repeat"),
    (["--queries", "0"], "--queries"),
])
def test_device_bench_refuses_bad_inputs(argv, says):
    done = device_puf("device", "bench", *argv)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_device_bench_refuses_a_shard_the_memory_cannot_hold():
    """Under a 1.5 GB address-space limit (ulimit -v), 10,000,000 labels (2.7 GB of codes, ids and the
    vectors being added) are refused before any work, with the sizes said, not killed midway."""
    done = subprocess.run(limited([sys.executable, "-m", "edge_app.cli", "device", "bench", "--labels", "10000000"],
                                  "RLIMIT_AS", 3 * 2**29), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "needs about 2,713 MB" in done.stderr and "give fewer labels" in done.stderr
    assert done.stdout == ""
