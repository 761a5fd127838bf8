"""`puf etch`: run a designed batch's laser job on a GRBL or galvo laser, or the simulated film.

Its arguments and work live in `fabrication.etch` (`edge_app.verbs.from_module`).
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

verb = Verb(
    "etch",
    "Etch a designed batch on a GRBL laser or a BJJCZ galvo laser (or the simulated film).",
    "  puf etch out/B0001 --sim                    # engrave the simulated film\n"
    "  puf etch out/B0001 --sim --film-style coarse   # a film of 9 um grains, half the contrast\n"
    "  puf etch out/B0001 --port /dev/ttyUSB0      # a GRBL controller in laser mode\n"
    "  puf etch out/B0001 --port /dev/ttyUSB0 --resume   # go on after an error or ALARM\n"
    "  puf etch out/B0001 --laser galvo --board 0 --frame   # trace the outline with the guide light\n"
    "  puf etch out/B0001 --laser galvo --board 0 --lens-field-mm 70   # mark on a galvo board",
    *from_module("fabrication.etch"),
    extras=("factory",),
    rank=12,
)
