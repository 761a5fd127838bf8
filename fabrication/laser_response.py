"""How the film responds to a laser pass of a given power (the process calibration).

The design uses it to plan hatch passes and to refuse a power at which neighbouring
borders would merge; the simulated film uses it as its physics. A factory with its own
film and laser replaces the series with its own measurement.

Line width and darkness follow the paper's power series (7 / 17 / 38 / 73 / 128 mW):
7 mW leaves no visible change, lines grow wider and darker up to 128 mW, which gives the
most distinct borders, and beyond it the heat-affected zone keeps widening the line until
neighbouring borders merge.
"""

from __future__ import annotations

import numpy as np

# power (mW) -> engraved line width (µm) and the fraction of fluorescence removed
POWER_SERIES_MW = (7.0, 17.0, 38.0, 73.0, 128.0)
LINE_WIDTH_UM = (0.0, 2.0, 3.5, 5.0, 7.0)
DARKNESS = (0.0, 0.3, 0.55, 0.78, 0.93)
REFERENCE_POWER_MW = 128.0  # the paper's best: distinct borders, neighbours apart
# Past the series the film melts around the line: the heat-affected zone widens fast.
_WIDENING_UM_PER_MW = 0.15


def line_width_um(power_mw: float) -> float:
    """Width of one engraved line; linear in power beyond the measured series."""
    if power_mw > POWER_SERIES_MW[-1]:
        return float(LINE_WIDTH_UM[-1] + (power_mw - POWER_SERIES_MW[-1]) * _WIDENING_UM_PER_MW)
    return float(np.interp(power_mw, POWER_SERIES_MW, LINE_WIDTH_UM, left=0.0))


def darkness(power_mw: float) -> float:
    """Fraction of the film's fluorescence an engraved line removes (0 = untouched)."""
    if power_mw > POWER_SERIES_MW[-1]:
        return float(min(0.98, DARKNESS[-1] + (power_mw - POWER_SERIES_MW[-1]) * 0.0003))
    return float(np.interp(power_mw, POWER_SERIES_MW, DARKNESS, left=0.0))
