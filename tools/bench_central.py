"""Labels per second pushed into the central registry (PostgreSQL), first push and re-push.

    tools/test_postgres.sh && python tools/bench_central.py --batches 20

A factory registry of BATCHES batches of 200 fields x 12 labels (2,400 labels each, as the
paper's batches) is written with `fabrication.registry`, then pushed into a fresh schema of the
server at $PUF_TEST_POSTGRES (default: the one tools/test_postgres.sh makes), dropped after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from edge_app.label_crop import Quality
from edge_app.layout import BatchLayout
from fabrication.central import CentralRegistry
from fabrication.registry import FieldRecord, LabelRecord, Registry


def factory(path: Path, batches: int) -> int:
    with Registry(path) as registry:
        for b in range(batches):
            layout = BatchLayout(f"F{b:04d}", tuple("ABCD" * 600), label_cols=4, label_rows=3, field_cols=20,
                                 field_rows=10)
            registry.upsert_batch(layout, "/data")
            for field in range(200):
                registry.record_field(FieldRecord(layout.batch_id, field, "done", labels_found=12), [
                    LabelRecord(layout.label_id(field, s), layout.batch_id, field, s, s // 4, s % 4, "found",
                                layout.pattern_of(field, s), crop_path=f"crops/{field}-{s}.png", sha256="ab" * 32,
                                quality=Quality(sharpness=0.5 + s / 100, exposure=180.0, clipped=0.0,
                                                border_contrast=0.8, skew_deg=0.3, aspect=1.01, size_ratio=1.0))
                    for s in range(12)])
    return batches * 2400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    server = sa.make_url(os.environ.get("PUF_TEST_POSTGRES",
                                        "postgresql+psycopg://puf_test:puf_test@127.0.0.1:5432/puf_test"))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server)
    with admin.begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            labels = factory(Path(tmp) / "registry.sqlite", args.batches)
            with CentralRegistry(url) as central:
                for what in ("first push", "re-push"):
                    start = time.perf_counter()
                    result = central.push(Path(tmp) / "registry.sqlite", "bench")
                    took = time.perf_counter() - start
                    print(f"{what}: {labels} labels in {took:.2f} s = {labels / took:,.0f} labels/s ({result})")
    finally:
        with admin.begin() as db:
            db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
