"""`puf segment`: cut photographed fields into label crops and record them in the registry.

A factory step that lives in `edge_app` because the device segments its own captures with
the same code.

Its arguments and work live in `edge_app.segment_cli` (`edge_app.verbs.from_module`).
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

verb = Verb(
    "segment",
    "Cut every field of a photographed batch, or a folder of images, into label crops and record "
    "them in the registry.",
    "  puf segment out/B0001                      # crops in out/B0001/crops, out/registry.sqlite\n"
    "  puf segment out/B0001 --overlay            # and a picture of each field to check\n"
    "  puf segment out/B0001 --json               # the summary for programs\n"
    "  puf segment scans/ --pixel-um 0.6 --labels 4x3   # a folder of real images, fields in name order\n"
    "  puf segment scans/ --order order.csv --layout layout.json   # fields by a CSV (file,field)\n"
    "  puf segment scans/ --pattern-set patterns.json --labels 4x3   # your glyphs (puf patterns): each\n"
    "                                             # label's pattern, the camera's turn, the pixel size found\n"
    "  puf segment out/B0001                      # again: resumes, skips recorded fields",
    *from_module("edge_app.segment_cli"),
    extras=(),
    rank=14,
)
