"""`puf demo`: the whole line on the simulated factory, from design to verdicts.

Its arguments and work live in `fabrication.demo` (`edge_app.verbs.from_module`).
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

verb = Verb(
    "demo",
    "Run the whole line on the simulated factory, verify genuine, never-enrolled and cloned labels.",
    "  puf demo                                    # a 2,400-label batch into ./demo_out (2-3 min)\n"
    "  puf demo --out /tmp/puf-demo --fields 4x2 --photos 40   # a small batch, under a minute\n"
    "  puf demo --figures docs/ --json > demo.json # pictures for the README, the report for programs",
    *from_module("fabrication.demo"),
    extras=("factory", "device"),
    rank=40,
)
