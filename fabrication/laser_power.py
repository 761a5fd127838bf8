"""Laser power calibration: the controller's S value for a wanted power in mW.

A power meter reading at a few S values gives a monotonic table; powers in between are
interpolated linearly. The table is a small JSON file ``{"s_max": 1000, "points":
[[S, mW], ...]}`` so a factory can replace the default with its own measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.errors import PufError
from edge_app.json_files import load_json

# A 500 mW nanosecond source measured at six S values (slightly non-linear near threshold).
DEFAULT_POINTS = ((0, 0.0), (100, 42.0), (250, 118.0), (500, 245.0), (750, 372.0), (1000, 500.0))


@dataclass(frozen=True)
class PowerCalibration:
    points: tuple[tuple[float, float], ...] = DEFAULT_POINTS
    s_max: int = 1000

    def __post_init__(self) -> None:
        s = [p[0] for p in self.points]
        mw = [p[1] for p in self.points]
        if not all(math.isfinite(v) for point in self.points for v in point):
            raise PufError(f"power calibration points must be finite numbers, got {self.points}")
        if len(self.points) < 2:
            raise PufError("a power calibration needs at least two (S, mW) points")
        if any(b <= a for a, b in zip(s, s[1:], strict=False)) or any(
            b <= a for a, b in zip(mw, mw[1:], strict=False)
        ):
            raise PufError("power calibration points must increase in both S and mW")
        if s[0] < 0 or s[-1] > self.s_max or mw[0] < 0:
            raise PufError(f"power calibration S values must lie in 0..{self.s_max}")

    @property
    def max_mw(self) -> float:
        return self.points[-1][1]

    def s_for_mw(self, power_mw: float) -> int:
        """The controller's whole S value for a power (GRBL's S words are whole numbers)."""
        return int(round(self.setting_for_mw(power_mw)))

    def setting_for_mw(self, power_mw: float) -> float:
        """The setting for a power, unrounded (a galvo board's power is finer than 1%)."""
        if not power_mw >= 0:
            raise PufError(f"laser power must be zero or positive, got {power_mw} mW")
        if power_mw > self.max_mw:
            raise PufError(
                f"{power_mw:g} mW is more than this laser gives ({self.max_mw:g} mW at S={self.points[-1][0]:g})"
            )
        s, mw = np.array(self.points).T
        return float(np.interp(power_mw, mw, s))

    def mw_for_s(self, s_value: float) -> float:
        s, mw = np.array(self.points).T
        return float(np.interp(min(max(s_value, 0.0), self.s_max), s, mw))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"s_max": self.s_max, "points": [list(p) for p in self.points]}))

    @classmethod
    def load(cls, path: Path) -> PowerCalibration:
        return load_json(path, "laser power calibration", cls._from_data)

    @classmethod
    def _from_data(cls, data: Any) -> PowerCalibration:  # any JSON value: a wrong shape raises below
        try:
            return cls(tuple((float(s), float(mw)) for s, mw in data["points"]), int(data.get("s_max", 1000)))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:
            raise PufError(f'not {{"s_max": S, "points": [[S, mW], ...]}} ({error!r})') from None
