"""Time the factory line on the simulated factory: design, etch and photograph a batch.

    python tools/bench_fabrication.py                 # the paper's batch: 200 fields, 2,400 labels
    python tools/bench_fabrication.py --fields 5x4    # a quick run

Prints a table and writes the figures as JSON beside the batch. The paper photographs
200 fields in about 4 minutes on its microscope.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from fabrication.batch_dir import BatchDir
from trainer.harness.line import run_verb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", default="20x10", help="fields per batch, COLSxROWS (default 20x10)")
    parser.add_argument("--out", type=Path, help="where to build the batch (default: a temporary folder)")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="puf-bench-"))
    batch_dir = root / "BENCH"
    shutil.rmtree(batch_dir, ignore_errors=True)
    steps = {
        "design": ["design", str(batch_dir), "--fields", args.fields, "--batch-id", "BENCH"],
        "etch": ["etch", str(batch_dir), "--sim"],
        "photograph": ["photograph", str(batch_dir), "--sim"],
    }
    seconds = {}
    for name, argv in steps.items():
        started = time.perf_counter()
        run_verb(argv)
        seconds[name] = round(time.perf_counter() - started, 2)
    seconds["total"] = round(sum(seconds.values()), 2)
    fields = len(BatchDir(batch_dir).fields_manifest().fields)
    result = {"fields": fields, "labels": fields * 12, "seconds": seconds,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    print(f"\n{'step':<12}{'seconds':>9}")
    for name, value in seconds.items():
        print(f"{name:<12}{value:>9.1f}")
    print(f"{fields} fields, {fields * 12} labels; paper: 200 photos in about 240 s")
    (root / "bench_fabrication.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
