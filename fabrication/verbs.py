"""The factory's verbs for the `puf` command (entry points in the ``puf.verbs`` group).

Each verb's arguments and work live in its own module, imported only when the verb is
built or run; this module stays free of heavy imports so `puf --help` is instant.
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

_FACTORY = ("ezdxf", "serial", "tifffile", "HersheyFonts")


design = Verb(
    "design",
    "Design a batch: layout, CAD (DXF/SVG), laser job (G-code) and stage positions.",
    "  puf design out/B0001                       # 200 fields of 4x3 labels, 128 mW\n"
    "  puf design out/B0002 --fields 20x10 --power-mw 73 --calibration stage.json\n"
    "  puf design out/B0003 --label-um 150 --pitch-um 200 --labels 5x4",
    *from_module("fabrication.design"),
    needs=_FACTORY,
    extra="factory",
)

patterns = Verb(
    "patterns",
    "Check a factory's own glyphs (SVG, DXF, a stroke font) and save them as a pattern set.",
    "  puf patterns glyphs.svg --out patterns.json --sheet glyphs.png   # one glyph per element id\n"
    "  puf patterns font:futural:ABDEFJKLPQRT --out patterns.json        # a Hershey stroke font\n"
    "  puf design out/B0001 --pattern-set patterns.json                 # then etch them",
    *from_module("fabrication.patterns_cli"),
    needs=_FACTORY,
    extra="factory",
)

etch = Verb(
    "etch",
    "Etch a designed batch on a GRBL laser or a BJJCZ galvo laser (or the simulated film).",
    "  puf etch out/B0001 --sim                    # engrave the simulated film\n"
    "  puf etch out/B0001 --sim --film-style coarse   # a film of 9 um grains, half the contrast\n"
    "  puf etch out/B0001 --port /dev/ttyUSB0      # a GRBL controller in laser mode\n"
    "  puf etch out/B0001 --port /dev/ttyUSB0 --resume   # go on after an error or ALARM\n"
    "  puf etch out/B0001 --laser galvo --board 0 --frame   # trace the outline with the guide light\n"
    "  puf etch out/B0001 --laser galvo --board 0 --lens-field-mm 70   # mark on a galvo board",
    *from_module("fabrication.etch"),
    needs=_FACTORY,
    extra="factory",
)

photograph = Verb(
    "photograph",
    "Photograph every field of a batch at its stage position (one TIFF per field).",
    "  puf photograph out/B0001 --sim              # the simulated microscope\n"
    "  puf photograph out/B0001 --mm-config rig.cfg   # a Micro-Manager rig (pymmcore-plus)\n"
    "  puf photograph out/B0001 --sim              # again: resumes, shoots only what is missing",
    *from_module("fabrication.photograph"),
    needs=_FACTORY,
    extra="factory",
)

demo = Verb(
    "demo",
    "Run the whole line on the simulated factory, verify genuine, never-enrolled and cloned labels.",
    "  puf demo                                    # a 2,400-label batch into ./demo_out (2-3 min)\n"
    "  puf demo --out /tmp/puf-demo --fields 4x2 --photos 40   # a small batch, under a minute\n"
    "  puf demo --figures docs/ --json > demo.json # pictures for the README, the report for programs",
    *from_module("fabrication.demo"),
    needs=_FACTORY,
    extra="factory",
)
