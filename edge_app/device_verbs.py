"""The verbs `edge_app` contributes to the `puf` command (entry points in ``puf.verbs``).

`segment` is a factory step, but it lives here because the device segments its own
captures with the same code. Each verb's work is imported only when it is built or run.
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

segment = Verb(
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
)

registry = Verb(
    "registry",
    "The central registry of a brand's factories and devices: push a factory's batches, import "
    "device journals, see clone alerts.",
    "  puf registry push out/registry.sqlite --factory shenzhen --central postgresql+psycopg://puf@db/puf\n"
    "  puf registry import /media/usb             # journals a device exported (puf journal export)\n"
    "  puf registry device dev-3f2a9c1e --at 52.52,13.40   # where a device works\n"
    "  puf registry alerts --json                 # clone alerts ($PUF_CENTRAL names the database)",
    *from_module("edge_app.central_cli"),
    needs=("sqlalchemy", "psycopg"),
    extra="central",
)
