"""`puf design`: lay out a batch and write everything the line needs to make it.

BATCH_DIR/
  layout.json                  the batch layout (edge_app.layout.BatchLayout), with its pattern set
  pattern_templates.npz        the batch's glyphs, for segmentation to read them with
  cad/batch.dxf, cad/batch.svg the label array: borders and patterns, in mm
  laser/job.gcode              the laser job for a GRBL controller in laser mode
  laser/job.json               power, S value, machine frame of that job
  laser/power_calibration.json the S -> mW table the job was written with
  stage/calibration.json       where the design sits on the microscope stage
  stage/positions.pos|.csv     the field positions (Micro-Manager 2 list, CSV)
  stage/mda.json               the same plan as a useq-schema MDASequence
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from edge_app.errors import PufError

DEFAULT_HATCH_UM = 2.5


def _grid(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not COLSxROWS, e.g. 4x3") from None
    if cols < 1 or rows < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: columns and rows must be >= 1")
    return cols, rows


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y in mm, e.g. -25,-5") from None
    return x, y


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the seed must be zero or positive")
    return seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("batch_dir", type=Path, help="folder to write the batch into")
    parser.add_argument("--batch-id", help="batch id (default: the folder's name)")
    parser.add_argument("--fields", type=_grid, default=(20, 10), metavar="COLSxROWS",
                        help="fields per batch (default 20x10 = 200)")
    parser.add_argument("--labels", type=_grid, default=(4, 3), metavar="COLSxROWS",
                        help="labels per field (default 4x3 = 12)")
    parser.add_argument("--label-um", type=float, default=200.0, help="label side (default 200)")
    parser.add_argument("--border-um", type=float, default=10.0, help="border width (default 10)")
    parser.add_argument("--pitch-um", type=float, default=250.0, help="label pitch (default 250)")
    parser.add_argument("--glyph-um", type=float, default=80.0, help="pattern glyph size (default 80)")
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
    parser.add_argument("--laser-origin-mm", type=_point, default=(0.0, 0.0), metavar="X,Y",
                        help="where design (0, 0) is in the laser's work coordinates (default 0,0); "
                             "e.g. -25,-5 for a GRBL whose soft-limit travel is negative")
    parser.add_argument("--calibration", type=Path,
                        help="stage calibration JSON: origin_um/rotation_deg, or reference_points")
    parser.add_argument("--exposure-ms", type=float, default=40.0, help="camera exposure for the plan")
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the pattern assignment")
    parser.add_argument("--force", action="store_true", help="overwrite an existing design")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def assign_patterns(count: int, names: list[str], seed: int) -> tuple[str, ...]:
    """Every class equally often (as far as `count` allows), in a seeded random order."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(count)
    return tuple(names[i % len(names)] for i in order)


def check_power(layout, power_mw: float, hatch_um: float = DEFAULT_HATCH_UM) -> dict:
    """Line width and the film left between neighbouring borders at this power; refuse a
    power at which neighbours merge."""
    from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um

    if not power_mw >= 0:
        raise PufError(f"laser power must be zero or positive, got {power_mw} mW")
    width = line_width_um(power_mw)
    if width <= 0:
        raise PufError(f"at {power_mw:g} mW the laser leaves no visible mark on the film (line width 0 in the "
                       "process calibration): the labels would have no borders; raise the power (the paper: 128 mW)")
    planned = min(line_width_um(REFERENCE_POWER_MW), layout.border_width_um)
    spill = max(width - planned, 0.0) / 2  # how far the ring grows past the label edge
    gap_left = layout.gap_um - 2 * spill
    if gap_left <= 0:
        raise PufError(
            f"at {power_mw:g} mW lines are {width:.1f} um wide: neighbouring borders "
            f"({layout.gap_um:g} um apart) would merge; lower the power or widen the pitch"
        )
    return {"line_width_um": round(width, 2), "gap_left_um": round(gap_left, 2)}


def texture_fraction(layout, line_width: float) -> float:
    """Share of the label's area that keeps its texture (the paper: about 75%)."""
    from fabrication.patterns import layout_pattern_set

    side = layout.label_size_um
    inner = max(side - 2 * layout.border_width_um, 0.0)
    strokes = 0.0
    names = set(layout.patterns)
    pattern_set = layout_pattern_set(layout)
    for name in names:
        for stroke in pattern_set.strokes(name):
            strokes += sum(math.dist(a, b) for a, b in zip(stroke, stroke[1:], strict=False))
    mean_glyph_area = strokes / len(names) * layout.glyph_size_um * line_width
    return 1.0 - (side * side - inner * inner + mean_glyph_area) / (side * side)


def write_dxf(path: Path, layout, power_mw: float) -> None:
    """The array for EzCAD-like galvo software: mm units, closed border contours (hatched
    there), open pattern strokes, one layer per pen (power) setting."""
    import ezdxf
    from ezdxf import units

    from fabrication.geometry import batch_labels, pattern_passes, square

    doc = ezdxf.new("R2010", setup=False)
    doc.units = units.MM
    doc.header["$MEASUREMENT"] = 1
    border_layer, pattern_layer = f"BORDER_{power_mw:g}mW", f"PATTERN_{power_mw:g}mW"
    doc.layers.add(border_layer, color=1)
    doc.layers.add(pattern_layer, color=5)
    msp = doc.modelspace()

    def mm(points):
        return [(x / 1000.0, -y / 1000.0) for x, y in points]

    half = layout.label_size_um / 2
    for field, slot in batch_labels(layout):
        cx, cy = layout.label_center_um(field, slot)
        for side in (half, half - layout.border_width_um):
            msp.add_lwpolyline(mm(square(cx, cy, side)[:-1]), close=True,
                               dxfattribs={"layer": border_layer})
        for laser_pass in pattern_passes(layout, cx, cy, layout.pattern_of(field, slot)):
            msp.add_lwpolyline(mm(laser_pass.points), dxfattribs={"layer": pattern_layer})
    doc.saveas(path)


def write_svg(path: Path, layout) -> None:
    """The array as SVG in mm (y downwards, like the design)."""
    from fabrication.geometry import batch_labels, pattern_passes, square

    width, height = layout.batch_size_um
    half = layout.label_size_um / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width / 1000:g}mm" height="{height / 1000:g}mm" '
        f'viewBox="0 0 {width:g} {height:g}">',
        f"<title>batch {layout.batch_id}: {layout.label_count} labels</title>",
        '<rect width="100%" height="100%" fill="#0b3d0b"/>',
    ]

    def path_d(points, close: bool) -> str:
        d = "M" + " L".join(f"{x:.2f},{y:.2f}" for x, y in points)
        return d + (" Z" if close else "")

    border_width = layout.border_width_um
    for field, slot in batch_labels(layout):
        cx, cy = layout.label_center_um(field, slot)
        ring = path_d(square(cx, cy, half)[:-1], True) + " " + path_d(
            square(cx, cy, half - border_width)[:-1][::-1], True)
        strokes = " ".join(path_d(p.points, False) for p in
                           pattern_passes(layout, cx, cy, layout.pattern_of(field, slot)))
        parts.append(f'<g id="{layout.label_id(field, slot)}"><path d="{ring}" fill="#111"/>'
                     f'<path d="{strokes}" fill="none" stroke="#111" stroke-width="7" '
                     'stroke-linecap="round" stroke-linejoin="round"/></g>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def run(args: argparse.Namespace) -> int:
    import time

    from edge_app.batch_dir import BatchDir
    from edge_app.layout import BatchLayout
    from fabrication.calibration import StageCalibration
    from fabrication.gcode import MachineFrame, laser_job_lines
    from fabrication.laser_power import PowerCalibration
    from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um
    from fabrication.pattern_import import check_distinct, load_pattern_set
    from fabrication.patterns import pattern_templates
    from fabrication.stage_plan import plan_positions, write_csv, write_mda_sequence, write_micromanager_pos

    started = time.perf_counter()
    batch_dir: Path = args.batch_dir
    batch = BatchDir(batch_dir)
    if batch.has_design() and not args.force:
        raise PufError(f"{batch_dir} already holds a design; use --force to overwrite it")
    pattern_set = load_pattern_set(args.pattern_set)
    if args.patterns is not None:
        chosen = [name.strip() for name in args.patterns.split(",") if name.strip()]
        if not chosen:
            raise PufError(f"--patterns {args.patterns!r} names no glyph")
        pattern_set = pattern_set.subset(chosen)
    names = pattern_set.names
    field_cols, field_rows = args.fields
    label_cols, label_rows = args.labels
    count = field_cols * field_rows * label_cols * label_rows
    layout = BatchLayout(
        batch_id=args.batch_id or batch_dir.resolve().name,
        patterns=assign_patterns(count, names, args.seed),
        label_size_um=args.label_um, border_width_um=args.border_um, pitch_um=args.pitch_um,
        glyph_size_um=args.glyph_um, label_cols=label_cols, label_rows=label_rows,
        field_cols=field_cols, field_rows=field_rows, pattern_set=pattern_set,
    )
    line_width = line_width_um(REFERENCE_POWER_MW)
    likeness = check_distinct(pattern_set, layout.glyph_size_um / layout.label_size_um,
                              line_width / layout.label_size_um)
    power_cal = PowerCalibration.load(args.power_calibration) if args.power_calibration else PowerCalibration()
    s_value = power_cal.s_for_mw(args.power_mw)  # first: can this laser give that power at all?
    power = check_power(layout, args.power_mw)
    stage_cal = StageCalibration.load(args.calibration) if args.calibration else StageCalibration()
    if not all(0 < speed < math.inf for speed in (args.feed_mm_min, args.mark_speed_mm_s, args.jump_speed_mm_s)):
        raise PufError("--feed-mm-min, --mark-speed-mm-s and --jump-speed-mm-s must be numbers above 0")

    batch.make_dirs()
    layout.save(batch.layout_path)
    # the glyphs of this batch, for segmentation to read patterns and orientations with
    pattern_templates(pattern_set, layout.glyph_size_um, layout.label_size_um).save(
        batch.templates_path)
    write_dxf(batch.dxf_path, layout, args.power_mw)
    write_svg(batch.svg_path, layout)
    frame = MachineFrame(*args.laser_origin_mm)
    job = list(laser_job_lines(layout, args.power_mw, line_width, power_cal, frame, args.feed_mm_min))
    batch.laser_job_path.write_text("\n".join(job) + "\n")
    power_cal.save(batch.power_calibration_path)
    batch.laser_settings_path.write_text(json.dumps({
        "power_mw": args.power_mw, "s_value": s_value, "planned_line_width_um": line_width,
        "frame": {"origin_x_mm": frame.origin_x_mm, "origin_y_mm": frame.origin_y_mm},
        "feed_mm_min": args.feed_mm_min,
        "galvo": {"mark_speed_mm_s": args.mark_speed_mm_s, "jump_speed_mm_s": args.jump_speed_mm_s},
        "lines": len(job),
    }, indent=1))
    stage_cal.save(batch.calibration_path)
    positions = plan_positions(layout, stage_cal)
    write_micromanager_pos(batch.positions_pos_path, positions)
    write_csv(batch.positions_csv_path, positions)
    write_mda_sequence(batch.mda_path, positions, args.exposure_ms)

    summary = {
        "batch_id": layout.batch_id,
        "batch_dir": str(batch_dir),
        "fields": layout.fields_per_batch,
        "labels": layout.label_count,
        "pattern_set": pattern_set.name,
        "pattern_classes": len(set(layout.patterns)),
        "glyph_likeness_worst": max(likeness["worst_self_likeness"], likeness["worst_pair_likeness"]),
        "batch_size_mm": [round(v / 1000, 3) for v in layout.batch_size_um],
        "power_mw": args.power_mw,
        "s_value": s_value,
        **power,
        "texture_fraction": round(texture_fraction(layout, power["line_width_um"] or line_width), 3),
        "gcode_lines": len(job),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        width = max(len(k) for k in summary)
        for key, value in summary.items():
            print(f"{key:<{width}}  {value}")
    return 0
