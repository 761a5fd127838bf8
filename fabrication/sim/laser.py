"""The simulated laser head: engraves into the simulated film what a controller fires."""

from __future__ import annotations

from collections.abc import Sequence

from edge_app.layout import BatchLayout
from fabrication.gcode import MachineFrame
from fabrication.geometry import batch_labels, label_passes
from fabrication.laser_power import PowerCalibration
from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um
from fabrication.sim.film import EtchedFilm


class SimulatedLaserHead:
    """Receives the moves a laser controller fires and engraves them into the film."""

    def __init__(
        self,
        film: EtchedFilm,
        calibration: PowerCalibration | None = None,
        frame: MachineFrame | None = None,
    ) -> None:
        self.film = film
        self.calibration = calibration or PowerCalibration()
        self.frame = frame or MachineFrame()
        self._power_of_s: dict[float, float] = {}  # a job uses one or a few S values

    def burn(self, x0_mm: float, y0_mm: float, x1_mm: float, y1_mm: float, s_value: float) -> None:
        power = self._power_of_s.get(s_value)
        if power is None:
            power = self._power_of_s[s_value] = self.calibration.mw_for_s(s_value)
        if line_width_um(power) <= 0.0 or (x0_mm == x1_mm and y0_mm == y1_mm):
            return
        x0, y0 = self.frame.to_design(x0_mm, y0_mm)
        x1, y1 = self.frame.to_design(x1_mm, y1_mm)
        self.film.add_segment(x0, y0, x1, y1, power)


def engrave_layout(film: EtchedFilm, layout: BatchLayout, power_mw: float | Sequence[float]) -> None:
    """Engrave every label of a layout straight into the film, without a controller
    (tests and pictures; the line itself goes through G-code and `puf etch`).
    `power_mw` is one power for all labels, or one per label in label-index order."""
    powers = [power_mw] * layout.label_count if isinstance(power_mw, int | float) else list(power_mw)
    planned = line_width_um(REFERENCE_POWER_MW)
    for index, (field, slot) in enumerate(batch_labels(layout)):
        for laser_pass in label_passes(layout, field, slot, planned):
            for a, b in zip(laser_pass.points, laser_pass.points[1:], strict=False):
                film.add_segment(*a, *b, powers[index])
