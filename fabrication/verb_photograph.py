"""`puf photograph`: every field of a batch at its stage position.

Its arguments and work still live beside the domain code, in `fabrication.photograph`; this module
declares the verb (entry point in ``puf.verbs``) and imports that module only when the verb
is built or run.
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

add_arguments, run = from_module("fabrication.photograph")

verb = Verb(
    "photograph",
    "Photograph every field of a batch at its stage position (one TIFF per field).",
    "  puf photograph out/B0001 --sim              # the simulated microscope\n"
    "  puf photograph out/B0001 --mm-config rig.cfg   # a Micro-Manager rig (pymmcore-plus)\n"
    "  puf photograph out/B0001 --sim              # again: resumes, shoots only what is missing",
    add_arguments,
    run,
    extras=("factory",),
    rank=13,
)
