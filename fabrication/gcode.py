"""The laser job as G-code for a GRBL controller in laser mode ($32=1).

M4 is GRBL's dynamic power mode: the laser fires only while moving under G1 and scales
with speed, and it is off during G0 travel. The machine frame is millimetres with Y up,
so design µm map as X = x / 1000 and Y = -y / 1000 (plus an optional origin offset).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edge_app.layout import BatchLayout
from fabrication.geometry import batch_labels, label_passes
from fabrication.laser_power import PowerCalibration


@dataclass(frozen=True)
class MachineFrame:
    """Where design (0, 0) sits on the laser's bed, in mm."""

    origin_x_mm: float = 0.0
    origin_y_mm: float = 0.0

    def to_machine(self, x_um: float, y_um: float) -> tuple[float, float]:
        return self.origin_x_mm + x_um / 1000.0, self.origin_y_mm - y_um / 1000.0

    def to_design(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        return (x_mm - self.origin_x_mm) * 1000.0, (self.origin_y_mm - y_mm) * 1000.0


def laser_job_lines(
    layout: BatchLayout,
    power_mw: float,
    line_width_um: float,
    calibration: PowerCalibration,
    frame: MachineFrame = MachineFrame(),
    feed_mm_min: float = 600.0,
) -> Iterator[str]:
    """Every line of the job, without line endings."""
    s_value = calibration.s_for_mw(power_mw)
    yield (f"; puf laser job: batch {layout.batch_id}, {layout.label_count} labels, "
           f"{power_mw:g} mW -> S{s_value} of {calibration.s_max}")
    yield "; frame: X = x_um / 1000, Y = -y_um / 1000 (mm), origin "\
          f"({frame.origin_x_mm:g}, {frame.origin_y_mm:g})"
    yield "G21"
    yield "G90"
    yield "G94"
    yield "M5 S0"
    yield f"F{feed_mm_min:g}"
    yield "M4 S0"
    for field, slot in batch_labels(layout):
        yield f"; label {layout.label_id(field, slot)} {layout.pattern_of(field, slot)}"
        for laser_pass in label_passes(layout, field, slot, line_width_um):
            (x0, y0), *rest = (frame.to_machine(x, y) for x, y in laser_pass.points)
            yield f"G0 X{x0:.4f} Y{y0:.4f}"
            for i, (x, y) in enumerate(rest):
                yield f"G1 X{x:.4f} Y{y:.4f}" + (f" S{s_value}" if i == 0 else "")
    yield "M5 S0"
    yield f"G0 X{frame.origin_x_mm:.4f} Y{frame.origin_y_mm:.4f}"
