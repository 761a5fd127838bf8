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

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.batch_dir import BatchDir
from fabrication.calibration import StageCalibration
from fabrication.gcode import MachineFrame, laser_job_lines
from fabrication.geometry import batch_labels, pattern_passes, square
from fabrication.laser_power import PowerCalibration
from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um
from fabrication.pattern_import import check_distinct, load_pattern_set
from fabrication.patterns import layout_pattern_set, pattern_templates
from fabrication.stage_plan import plan_positions, write_csv, write_mda_sequence, write_micromanager_pos

DEFAULT_HATCH_UM = 2.5


@dataclass(frozen=True)
class DesignOptions:
    """What a batch is made of and how it is made: the sizes in um, the glyphs, the laser's power,
    speeds and frame, the stage calibration and the camera's exposure (the `puf design` options)."""

    batch_id: str | None  # None: the folder's name
    fields: tuple[int, int]  # fields per batch, columns x rows
    labels: tuple[int, int]  # labels per field, columns x rows
    label_um: float
    border_um: float
    pitch_um: float
    glyph_um: float
    pattern_set: str  # a source `fabrication.pattern_import.load_pattern_set` reads
    patterns: tuple[str, ...] | None  # the set's glyphs to use (None: all of them)
    power_mw: float
    power_calibration: Path | None  # None: the built-in table
    feed_mm_min: float
    mark_speed_mm_s: float
    jump_speed_mm_s: float
    laser_origin_mm: tuple[float, float]
    calibration: Path | None  # the stage calibration (None: the default)
    exposure_ms: float
    seed: int


def assign_patterns(count: int, names: list[str], seed: int) -> tuple[str, ...]:
    """Every class equally often (as far as `count` allows), in a seeded random order."""
    order = np.random.default_rng(seed).permutation(count)
    return tuple(names[i % len(names)] for i in order)


def check_power(layout, power_mw: float, hatch_um: float = DEFAULT_HATCH_UM) -> dict:
    """Line width and the film left between neighbouring borders at this power; refuse a
    power at which neighbours merge."""
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


def design_batch(batch_dir: Path, options: DesignOptions, force: bool = False) -> dict:
    """Write the batch's folder (see the module's docstring) and return its summary; refuse a
    folder that already holds a design unless `force`."""
    started = time.perf_counter()
    batch = BatchDir(batch_dir)
    if batch.has_design() and not force:
        raise PufError(f"{batch_dir} already holds a design; use --force to overwrite it")
    pattern_set = load_pattern_set(options.pattern_set)
    if options.patterns is not None:
        pattern_set = pattern_set.subset(options.patterns)
    names = pattern_set.names
    field_cols, field_rows = options.fields
    label_cols, label_rows = options.labels
    count = field_cols * field_rows * label_cols * label_rows
    layout = BatchLayout(
        batch_id=options.batch_id or batch_dir.resolve().name,
        patterns=assign_patterns(count, names, options.seed),
        label_size_um=options.label_um, border_width_um=options.border_um, pitch_um=options.pitch_um,
        glyph_size_um=options.glyph_um, label_cols=label_cols, label_rows=label_rows,
        field_cols=field_cols, field_rows=field_rows, pattern_set=pattern_set,
    )
    line_width = line_width_um(REFERENCE_POWER_MW)
    likeness = check_distinct(pattern_set, layout.glyph_size_um / layout.label_size_um,
                              line_width / layout.label_size_um)
    power_cal = PowerCalibration.load(options.power_calibration) if options.power_calibration else \
        PowerCalibration()
    s_value = power_cal.s_for_mw(options.power_mw)  # first: can this laser give that power at all?
    power = check_power(layout, options.power_mw)
    stage_cal = StageCalibration.load(options.calibration) if options.calibration else StageCalibration()
    speeds = (options.feed_mm_min, options.mark_speed_mm_s, options.jump_speed_mm_s)
    if not all(0 < speed < math.inf for speed in speeds):
        raise PufError("--feed-mm-min, --mark-speed-mm-s and --jump-speed-mm-s must be numbers above 0")

    batch.make_dirs()
    layout.save(batch.layout_path)
    # the glyphs of this batch, for segmentation to read patterns and orientations with
    pattern_templates(pattern_set, layout.glyph_size_um, layout.label_size_um).save(
        batch.templates_path)
    write_dxf(batch.dxf_path, layout, options.power_mw)
    write_svg(batch.svg_path, layout)
    frame = MachineFrame(*options.laser_origin_mm)
    job = list(laser_job_lines(layout, options.power_mw, line_width, power_cal, frame, options.feed_mm_min))
    batch.laser_job_path.write_text("\n".join(job) + "\n")
    power_cal.save(batch.power_calibration_path)
    batch.laser_settings_path.write_text(json.dumps({
        "power_mw": options.power_mw, "s_value": s_value, "planned_line_width_um": line_width,
        "frame": {"origin_x_mm": frame.origin_x_mm, "origin_y_mm": frame.origin_y_mm},
        "feed_mm_min": options.feed_mm_min,
        "galvo": {"mark_speed_mm_s": options.mark_speed_mm_s, "jump_speed_mm_s": options.jump_speed_mm_s},
        "lines": len(job),
    }, indent=1))
    stage_cal.save(batch.calibration_path)
    positions = plan_positions(layout, stage_cal)
    write_micromanager_pos(batch.positions_pos_path, positions)
    write_csv(batch.positions_csv_path, positions)
    write_mda_sequence(batch.mda_path, positions, options.exposure_ms)

    return {
        "batch_id": layout.batch_id,
        "batch_dir": str(batch_dir),
        "fields": layout.fields_per_batch,
        "labels": layout.label_count,
        "pattern_set": pattern_set.name,
        "pattern_classes": len(set(layout.patterns)),
        "glyph_likeness_worst": max(likeness["worst_self_likeness"], likeness["worst_pair_likeness"]),
        "batch_size_mm": [round(v / 1000, 3) for v in layout.batch_size_um],
        "power_mw": options.power_mw,
        "s_value": s_value,
        **power,
        "texture_fraction": round(texture_fraction(layout, power["line_width_um"] or line_width), 3),
        "gcode_lines": len(job),
        "seconds": round(time.perf_counter() - started, 2),
    }
