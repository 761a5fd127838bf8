"""`puf photograph`: every field of a batch at its stage position.

Its arguments and work live in `fabrication.photograph` (`edge_app.verbs.from_module`).
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

verb = Verb(
    "photograph",
    "Photograph every field of a batch at its stage position (one TIFF per field).",
    "  puf photograph out/B0001 --sim              # the simulated microscope\n"
    "  puf photograph out/B0001 --mm-config rig.cfg   # a Micro-Manager rig (pymmcore-plus)\n"
    "  puf photograph out/B0001 --sim              # again: resumes, shoots only what is missing",
    *from_module("fabrication.photograph"),
    extras=("factory",),
    rank=13,
)
