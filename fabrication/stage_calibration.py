"""The stage calibration format (BATCH_DIR/stage/calibration.json): where the design sits
on the microscope stage.

A chip is never placed exactly square on the stage. The transform stage = origin + scale *
R(rotation) * M * design turns the layout's design coordinates into stage positions; M flips
y for the many stages whose y axis points the other way from the design's (mirror_y).

This module owns the file, read and write, because both sides need it: the factory plans
stage positions with it, and segmentation (`edge_app`, which may not import `fabrication`)
turns the stage positions the microscope reported back into design coordinates. Fitting a
calibration from measured reference points is the factory's job
(`fabrication.calibration`), which hands its fit to `load` here.

On disk::

    {"origin_um": [x, y], "rotation_deg": 0.0, "scale": 1.0, "mirror_y": false}

or, as a person measures it, reference points to fit that from::

    {"reference_points": [{"design_um": [x, y], "stage_um": [x, y]}, ...]}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge_app.errors import PufError
from edge_app.json_files import read_json, write_json

Point = tuple[float, float]
C = TypeVar("C", bound="StageCalibration")


@dataclass(frozen=True)
class StageCalibration:
    origin_um: tuple[float, float] = (0.0, 0.0)  # stage position of design (0, 0)
    rotation_deg: float = 0.0  # rotation from design axes to stage axes
    scale: float = 1.0  # stage µm per design µm (stage encoder or CAD scale error)
    mirror_y: bool = False  # the stage's y axis runs against the design's

    def __post_init__(self) -> None:
        values = (*self.origin_um, self.rotation_deg, self.scale)
        if not all(math.isfinite(v) for v in values):
            raise PufError(f"stage calibration has a value that is not a number: {values}")
        if not 0.5 < self.scale < 2.0:
            raise PufError(f"stage calibration scale {self.scale} is implausible (expected about 1)")

    def _matrix(self) -> np.ndarray:
        a = math.radians(self.rotation_deg)
        rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return self.scale * rotation @ np.diag([1.0, -1.0 if self.mirror_y else 1.0])

    def design_to_stage(self, x_um: float, y_um: float) -> Point:
        sx, sy = self._matrix() @ (x_um, y_um) + self.origin_um
        return float(sx), float(sy)

    def stage_to_design(self, x_um: float, y_um: float) -> Point:
        dx, dy = np.linalg.solve(self._matrix(), np.subtract((x_um, y_um), self.origin_um))
        return float(dx), float(dy)

    def to_dict(self) -> dict:
        return {"origin_um": list(self.origin_um), "rotation_deg": self.rotation_deg,
                "scale": self.scale, "mirror_y": self.mirror_y}

    def save(self, path: Path) -> None:
        """Write the calibration whole or not at all."""
        write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls: type[C], path: Path,
             fit: Callable[[list[Point], list[Point]], C] | None = None) -> C:
        """Read a calibration; reference points are fitted with `fit` (the factory's
        `fabrication.calibration`), and refused without one: segmentation needs the
        transform itself. Every fault is a PufError naming the file."""
        path = Path(path)
        data = read_json(path, "stage calibration")
        try:
            if not isinstance(data, dict):
                raise ValueError(f"expected an object, got {type(data).__name__}")
            if "reference_points" in data:
                if fit is None:
                    raise PufError("it holds reference points, not a fitted calibration: "
                                   "'puf design --calibration FILE' fits them")
                pairs = data["reference_points"]
                return fit([_point(p["design_um"]) for p in pairs], [_point(p["stage_um"]) for p in pairs])
            return cls(_point(data["origin_um"]), float(data.get("rotation_deg", 0.0)),
                       float(data.get("scale", 1.0)), _flag(data.get("mirror_y", False)))
        except PufError as error:
            raise PufError(f"stage calibration {path}: {error}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PufError(f"cannot read the stage calibration {path}: {error!r}") from None


def _point(value: object) -> Point:
    x, y = (float(v) for v in value)  # type: ignore[attr-defined]
    return x, y


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"mirror_y must be true or false, got {value!r}")
    return value
