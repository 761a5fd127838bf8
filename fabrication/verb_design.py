"""`puf design`: a batch's layout, CAD, laser job and stage positions.

Its arguments and work live in `fabrication.design` (`edge_app.verbs.from_module`).
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

verb = Verb(
    "design",
    "Design a batch: layout, CAD (DXF/SVG), laser job (G-code) and stage positions.",
    "  puf design out/B0001                       # 200 fields of 4x3 labels, 128 mW\n"
    "  puf design out/B0002 --fields 20x10 --power-mw 73 --calibration stage.json\n"
    "  puf design out/B0003 --label-um 150 --pitch-um 200 --labels 5x4",
    *from_module("fabrication.design"),
    extras=("factory",),
    rank=11,
)
