"""`puf patterns SOURCE`: turn a factory's glyphs into a checked pattern set (patterns.json),
and draw them on a sheet to look at before anything is etched.

The set is what `puf design --pattern-set` and `puf segment --pattern-set` take; the same
checks run there (glyph names, strokes, glyphs the device could not tell apart or orient).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.arguments import nonempty, output_path, positive
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=nonempty,
                        help="builtin, a patterns.json, an SVG file (one glyph per element id), a folder "
                             "of SVG files, a DXF file (one glyph per layer), or font:FONT:CHARS")
    parser.add_argument("--out", type=output_path, help="write the set here (patterns.json)")
    parser.add_argument("--sheet", type=output_path, help="draw the glyphs, as a label sees them, into this PNG")
    from edge_app.layout import BatchLayout

    for option, default, what in (("--label-um", BatchLayout.label_size_um, "label side"),
                                  ("--glyph-um", BatchLayout.glyph_size_um, "glyph size")):
        parser.add_argument(option, type=positive, default=default,
                            help=f"{what}, for the checks (default {default:g})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def glyph_sheet(pattern_set, path: Path, cell_px: int = 96) -> Path:
    """Every glyph drawn dark on light film in a grid, its name beneath."""
    import math

    import cv2
    import numpy as np

    cols = min(len(pattern_set.names), 10)
    rows = math.ceil(len(pattern_set.names) / cols)
    sheet = np.full((rows * (cell_px + 18), cols * cell_px, 3), 255, np.uint8)
    for k, (name, strokes) in enumerate(pattern_set.glyphs):
        y0, x0 = (k // cols) * (cell_px + 18), (k % cols) * cell_px
        cv2.rectangle(sheet, (x0 + 4, y0 + 4), (x0 + cell_px - 5, y0 + cell_px - 5), (120, 200, 120), -1)
        for stroke in strokes:
            points = (np.asarray(stroke) * 0.7 * cell_px + (x0 + cell_px / 2, y0 + cell_px / 2)) * 16
            cv2.polylines(sheet, [np.round(points).astype(np.int32)], False, (20, 40, 20), 3, cv2.LINE_AA, shift=4)
        cv2.putText(sheet, name[:12], (x0 + 4, y0 + cell_px + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet):
        from edge_app.errors import PufError

        raise PufError(f"cannot write the sheet {path}")
    return path


def run(args: argparse.Namespace) -> int:
    from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um
    from fabrication.pattern_import import MAX_LIKENESS, MAX_SELF_LIKENESS, check_distinct, load_pattern_set

    pattern_set = load_pattern_set(args.source)
    likeness = check_distinct(pattern_set, args.glyph_um / args.label_um,
                              line_width_um(REFERENCE_POWER_MW) / args.label_um)
    summary = {**pattern_set.describe(), "glyph_names": pattern_set.names, **likeness}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pattern_set.save(args.out)
        summary["written"] = str(args.out)
    if args.sheet:
        summary["sheet"] = str(glyph_sheet(pattern_set, args.sheet))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"pattern set {pattern_set.name}: {len(pattern_set.names)} glyphs ({', '.join(pattern_set.names)})")
        print(f"most alike: two glyphs {likeness['worst_pair_likeness']:.2f} (refused above {MAX_LIKENESS}), "
              f"glyph {likeness['worst_self_glyph']} and its own turn {likeness['worst_self_likeness']:.2f} "
              f"(refused above {MAX_SELF_LIKENESS})")
        for key in ("written", "sheet"):
            if key in summary:
                print(f"{key}: {summary[key]}")
    return 0


verb = Verb(
    "patterns",
    "Check a factory's own glyphs (SVG, DXF, a stroke font) and save them as a pattern set.",
    "  puf patterns glyphs.svg --out patterns.json --sheet glyphs.png   # one glyph per element id\n"
    "  puf patterns font:futural:ABDEFJKLPQRT --out patterns.json        # a Hershey stroke font\n"
    "  puf design out/B0001 --pattern-set patterns.json                 # then etch them",
    add_arguments,
    run,
    extras=("factory",),
    rank=10,
)
