"""`puf design`: a batch's layout, CAD, laser job and stage positions.

The command line becomes a `fabrication.design.DesignOptions`; `design_batch` does the work,
imported when the verb runs, and its summary is printed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.arguments import grid, nonempty, nonempty_path, point_mm
from edge_app.verbs import Verb


def seed(text: str) -> int:
    """`--seed`: a whole number, zero or positive."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the seed must be zero or positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_app.layout import BatchLayout  # its defaults are a batch's

    parser.add_argument("batch_dir", type=nonempty_path, help="folder to write the batch into")
    parser.add_argument("--batch-id", type=nonempty, help="batch id (default: the folder's name)")
    for option, cols, rows, what in (("--fields", BatchLayout.field_cols, BatchLayout.field_rows, "fields per batch"),
                                     ("--labels", BatchLayout.label_cols, BatchLayout.label_rows, "labels per field")):
        parser.add_argument(option, type=grid, default=(cols, rows), metavar="COLSxROWS",
                            help=f"{what} (default {cols}x{rows} = {cols * rows})")
    for option, default, what in (("--label-um", BatchLayout.label_size_um, "label side"),
                                  ("--border-um", BatchLayout.border_width_um, "border width"),
                                  ("--pitch-um", BatchLayout.pitch_um, "label pitch"),
                                  ("--glyph-um", BatchLayout.glyph_size_um, "pattern glyph size")):
        parser.add_argument(option, type=float, default=default, help=f"{what} (default {default:g})")
    parser.add_argument("--pattern-set", default="builtin", metavar="SOURCE",
                        help="the glyphs: builtin (the 44 classes), a patterns.json, an SVG file (one glyph per "
                             "element id), a folder of SVG files, a DXF file (one glyph per layer), or "
                             "font:FONT:CHARS (a Hershey stroke font); default builtin")
    parser.add_argument("--patterns", help="comma-separated glyphs of the set to use (default: all of them)")
    parser.add_argument("--power-mw", type=float, default=128.0, help="laser power (default 128 mW)")
    parser.add_argument("--power-calibration", type=Path,
                        help="JSON table of measured (S, mW) points (default: built-in)")
    parser.add_argument("--feed-mm-min", type=float, default=600.0,
                        help="GRBL feed while marking, the job's F word (default 600 mm/min)")
    parser.add_argument("--mark-speed-mm-s", type=float, default=1000.0,
                        help="galvo marking speed (default 1000 mm/s; puf etch --laser galvo)")
    parser.add_argument("--jump-speed-mm-s", type=float, default=4000.0,
                        help="galvo jump speed between marks (default 4000 mm/s)")
    parser.add_argument("--laser-origin-mm", type=point_mm, default=(0.0, 0.0), metavar="X,Y",
                        help="where design (0, 0) is in the laser's work coordinates (default 0,0); "
                             "e.g. -25,-5 for a GRBL whose soft-limit travel is negative")
    parser.add_argument("--calibration", type=Path,
                        help="stage calibration JSON: origin_um/rotation_deg, or reference_points")
    parser.add_argument("--exposure-ms", type=float, default=40.0, help="camera exposure for the plan")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the pattern assignment")
    parser.add_argument("--force", action="store_true", help="overwrite an existing design")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError
    from fabrication.design import DesignOptions, design_batch

    patterns = None
    if args.patterns is not None:
        patterns = tuple(name.strip() for name in args.patterns.split(",") if name.strip())
        if not patterns:
            raise PufError(f"--patterns {args.patterns!r} names no glyph")
    options = DesignOptions(
        batch_id=args.batch_id, fields=args.fields, labels=args.labels, label_um=args.label_um,
        border_um=args.border_um, pitch_um=args.pitch_um, glyph_um=args.glyph_um, pattern_set=args.pattern_set,
        patterns=patterns, power_mw=args.power_mw, power_calibration=args.power_calibration,
        feed_mm_min=args.feed_mm_min, mark_speed_mm_s=args.mark_speed_mm_s, jump_speed_mm_s=args.jump_speed_mm_s,
        laser_origin_mm=args.laser_origin_mm, calibration=args.calibration, exposure_ms=args.exposure_ms,
        seed=args.seed)
    summary = design_batch(args.batch_dir, options, force=args.force)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        width = max(len(k) for k in summary)
        for key, value in summary.items():
            print(f"{key:<{width}}  {value}")
    return 0


verb = Verb(
    "design",
    "Design a batch: layout, CAD (DXF/SVG), laser job (G-code) and stage positions.",
    "  puf design out/B0001                       # 200 fields of 4x3 labels, 128 mW\n"
    "  puf design out/B0002 --fields 20x10 --power-mw 73 --calibration stage.json\n"
    "  puf design out/B0003 --label-um 150 --pitch-um 200 --labels 5x4",
    add_arguments,
    run,
    extras=("factory",),
    rank=11,
)
