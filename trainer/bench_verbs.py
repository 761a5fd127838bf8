"""The `bench` verb: the paper's experiment at its scale, with a keypoint baseline.

Entry point in ``puf.verbs``; the work is imported only when the verb is built or run.
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

bench = Verb(
    "bench",
    "Measure the whole recognition stage at the paper's scale, beside a keypoint baseline.",
    "  puf bench --quick                          # a few minutes: small database, 500 queries\n"
    "  puf bench --out bench_out                  # 4,155,600 enrolled, 10,000 + 10,000 queries",
    *from_module("trainer.bench.cli"),
    needs=("faiss", "cv2", "ezdxf"),
    extra="all",
)
