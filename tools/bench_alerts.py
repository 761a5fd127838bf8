"""Clone alerts at scale: `--rows` journal checks imported into a central registry on the test
PostgreSQL server (tools/test_postgres.sh), then `puf registry alerts`'s query timed.

    tools/test_postgres.sh && .venv/bin/python tools/bench_alerts.py --rows 10000000
    .venv/bin/python tools/bench_alerts.py --rows 1000000 --baseline old_central.py

1. `--devices` devices, each with its own signing key, registered (`add_device`).
2. Their checks, as signed sync files of 50,000 checks (`edge_app.journal_sync`'s format and
   limit), written to a folder: `--labels` labels checked at random times over 90 days, 9 in
   10 genuine, the rest counterfeit with no label; a few labels are checked on two devices
   hours apart (clones). Writing the files is not timed.
3. Import: `CentralRegistry.import_journals`, `--files-per-import` files a transaction, as
   `puf registry import` takes a stick: rows a second, the files' reading and checking included.
4. Alerts: `CentralRegistry.alerts()` with its defaults (24 hours, 50 km, 20 checks), timed;
   with `--baseline FILE` (a central.py of an older puf, e.g. the one before the alerts were
   SQL: `git show 4a7607a^:edge_app/central.py`, its `from edge_app import registry` made
   `from fabrication import registry`), that file's `alerts` on the same database in the same
   run, and the two lists compared.

An older import, to compare rates: the same command with an older tree first on the path
(`git archive main | tar -x -C OLD; PYTHONPATH=OLD python tools/bench_alerts.py ...`).

The registry goes into a new schema of the test database, dropped at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from results_file import RESULTS, save, started

from edge_app.journal import TIME_FORMAT
from edge_app.journal_sync import FORMAT, ROWS_PER_FILE, VERSION
from edge_app.signing import public_pem, signature_for
from fabrication.central import CentralRegistry

SERVER = os.environ.get("PUF_TEST_POSTGRES", "postgresql+psycopg://puf_test:puf_test@127.0.0.1:5432/puf_test")
START = 1_790_000_000  # 2026-09-21, seconds since 1970


def label_id(i: int) -> str:
    return f"B{i // 2400:05d}-{i % 2400 // 12:04d}-{i % 12:02d}"


def write_files(folder: Path, rows: int, devices: int, labels: int, seed: int) -> tuple[list[Path], list]:
    """The signed sync files of `rows` checks and the devices' keys."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    rng = np.random.default_rng(seed)
    keys = [Ed25519PrivateKey.generate() for _ in range(devices)]
    device = rng.integers(0, devices, rows)
    label = rng.integers(0, labels, rows)
    when = START + rng.integers(0, 90 * 86400, rows)
    clones = rng.choice(rows, max(1, rows // 100_000), replace=False)  # a clone: the same label elsewhere, soon
    device[clones] = (device[clones - 1] + 1) % devices
    label[clones], when[clones] = label[clones - 1], when[clones - 1] + 3600
    genuine = rng.random(rows) < 0.9
    genuine[clones] = genuine[clones - 1] = True
    paths = []
    for d in range(devices):
        mine = np.flatnonzero(device == d)
        for start in range(0, len(mine), ROWS_PER_FILE):
            entries = []
            for k, row in enumerate(mine[start:start + ROWS_PER_FILE].tolist(), start=start + 1):
                stamp = time.strftime(TIME_FORMAT, time.gmtime(int(when[row])))
                if genuine[row]:
                    entries.append([k, stamp, "genuine", label_id(int(label[row])), 0.9, 0.6, "P01", "", "1-ab",
                                    "camera", 3.0, f"D{d:04d}"])
                else:
                    entries.append([k, stamp, "counterfeit", None, 0.2, 0.6, None, "no match", "1-ab",
                                    "camera", 3.0, f"D{d:04d}"])
            document = {"format": FORMAT, "version": VERSION, "device_id": f"D{d:04d}", "entries": entries}
            document["signature"] = signature_for(document, keys[d])
            path = folder / f"puf-journal-D{d:04d}-{start + 1:010d}.json"
            path.write_text(json.dumps(document, separators=(",", ":")))
            paths.append(path)
    return paths, keys


def older_alerts(source: Path):
    """The `alerts` method of another central.py (an older puf's), to run on the same database."""
    spec = importlib.util.spec_from_file_location("central_baseline", source)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.CentralRegistry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--labels", type=int, default=0, help="distinct labels (default: rows / 3)")
    parser.add_argument("--files-per-import", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="an older central.py whose alerts to time beside")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_alerts.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(SERVER)
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.make_url(SERVER).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    result = started("bench_alerts.py") | {"database": "PostgreSQL", "rows": args.rows, "devices": args.devices}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_alerts_") as folder:
            t = time.perf_counter()
            paths, keys = write_files(Path(folder), args.rows, args.devices, args.labels or max(1, args.rows // 3),
                                      args.seed)
            print(f"wrote {len(paths)} files in {time.perf_counter() - t:.0f} s", flush=True)
            with CentralRegistry(url) as central:
                for d, key in enumerate(keys):
                    pem = Path(folder) / f"D{d:04d}.pub"
                    pem.write_bytes(public_pem(key.public_key()))
                    central.add_device(f"D{d:04d}", pem)
                    central.set_device(f"D{d:04d}", lat=48.0 + d % 10, lon=8.0 + d // 10 % 10)
                t = time.perf_counter()
                for start in range(0, len(paths), args.files_per_import):
                    central.import_journals(paths[start:start + args.files_per_import])
                    print(f"imported {start + args.files_per_import}/{len(paths)} files, "
                          f"{time.perf_counter() - t:.0f} s", flush=True)
                seconds = time.perf_counter() - t
                result["import"] = {"seconds": round(seconds, 1), "rows_per_s": round(args.rows / seconds),
                                    "load_after": os.getloadavg()[0]}
                with engine.begin() as db:
                    db.execute(sa.text(f"ANALYZE {schema}.verifications"))
                t = time.perf_counter()
                alerts = central.alerts()
                result["alerts"] = {"seconds": round(time.perf_counter() - t, 2), "count": len(alerts),
                                    "kinds": sorted({a.kind for a in alerts}), "load_after": os.getloadavg()[0]}
                print("alerts", result["alerts"], flush=True)
            if args.baseline:
                with older_alerts(args.baseline)(url) as older:
                    t = time.perf_counter()
                    before = older.alerts()
                    seconds = time.perf_counter() - t
                    old, new = [tuple(vars(a).values()) for a in before], [tuple(vars(a).values()) for a in alerts]
                    result["alerts_baseline"] = {"source": str(args.baseline), "seconds": round(seconds, 2),
                                                 "count": len(before), "same_alerts": old == new,
                                                 "load_after": os.getloadavg()[0],
                                                 "only_baseline": sorted(set(old) - set(new))[:5],
                                                 "only_new": sorted(set(new) - set(old))[:5]}
                print("baseline", result["alerts_baseline"], flush=True)
    finally:
        with engine.begin() as db:
            db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
    save(result, args.out)


if __name__ == "__main__":
    main()
