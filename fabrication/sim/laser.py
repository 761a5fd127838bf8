"""The simulated laser head: engraves into the simulated film what a controller fires."""

from __future__ import annotations

from fabrication.gcode import MachineFrame
from fabrication.laser_power import PowerCalibration
from fabrication.sim.film import EtchedFilm
from fabrication.laser_response import line_width_um


class SimulatedLaserHead:
    """Receives the moves a laser controller fires and engraves them into the film."""

    def __init__(
        self,
        film: EtchedFilm,
        calibration: PowerCalibration = PowerCalibration(),
        frame: MachineFrame = MachineFrame(),
    ) -> None:
        self.film = film
        self.calibration = calibration
        self.frame = frame

    def burn(self, x0_mm: float, y0_mm: float, x1_mm: float, y1_mm: float, s_value: float) -> None:
        power = self.calibration.mw_for_s(s_value)
        if line_width_um(power) <= 0.0 or (x0_mm == x1_mm and y0_mm == y1_mm):
            return
        x0, y0 = self.frame.to_design(x0_mm, y0_mm)
        x1, y1 = self.frame.to_design(x1_mm, y1_mm)
        self.film.add_segment(x0, y0, x1, y1, power)
