"""Stage calibration: where the design sits on the microscope stage.

A chip is never placed exactly square on the stage. Measuring two or more reference
points (for example the outer corners of the first and last label) gives the similarity
transform stage = origin + scale * R(rotation) * M * design, which turns the layout's design
coordinates into stage positions; M flips y for the many stages whose y axis points the
other way from the design's (mirror_y).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.errors import PufError


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

    def design_to_stage(self, x_um: float, y_um: float) -> tuple[float, float]:
        sx, sy = self._matrix() @ (x_um, y_um) + self.origin_um
        return float(sx), float(sy)

    def stage_to_design(self, x_um: float, y_um: float) -> tuple[float, float]:
        dx, dy = np.linalg.solve(self._matrix(), np.subtract((x_um, y_um), self.origin_um))
        return float(dx), float(dy)

    @classmethod
    def from_reference_points(
        cls,
        design_um: list[tuple[float, float]],
        stage_um: list[tuple[float, float]],
        max_residual_um: float = 10.0,
    ) -> StageCalibration:
        """Least-squares similarity transform from matched reference points, with or
        without a mirrored y axis, whichever fits; refuses points that fit neither."""
        d = np.asarray(design_um, float)
        s = np.asarray(stage_um, float)
        if d.shape != s.shape or d.ndim != 2 or d.shape[1] != 2:
            raise PufError("reference points must be matching lists of (x, y) pairs")
        if len(d) < 2:
            raise PufError("a stage calibration needs at least two reference points")
        if ((d - d.mean(0)) ** 2).sum() < 1e-6:
            raise PufError("the reference points coincide; pick points far apart")
        fits = [cls._fit(d, s, mirror) for mirror in (False, True)] if len(d) > 2 else [cls._fit(d, s, False)]
        calibration, residual = min(fits, key=lambda fit: fit[1])
        if residual > max_residual_um:
            raise PufError(
                f"the reference points do not fit one placement of the design (worst point off "
                f"by {residual:.1f} um, more than {max_residual_um:g}); check that each stage "
                "point was measured on the design point it is paired with"
            )
        return calibration

    @classmethod
    def _fit(cls, d: np.ndarray, s: np.ndarray, mirror_y: bool) -> tuple[StageCalibration, float]:
        """Umeyama's similarity fit in complex-number form, and its worst residual."""
        if mirror_y:
            d = d * (1.0, -1.0)
        dc, sc = d - d.mean(0), s - s.mean(0)
        dz, sz = dc[:, 0] + 1j * dc[:, 1], sc[:, 0] + 1j * sc[:, 1]
        k = (np.conj(dz) @ sz) / (dc**2).sum()
        origin = s.mean(0) - np.array([[k.real, -k.imag], [k.imag, k.real]]) @ d.mean(0)
        if not 0.5 < abs(k) < 2.0:
            return cls(), math.inf
        fit = cls((float(origin[0]), float(origin[1])), math.degrees(np.angle(k)), float(abs(k)), mirror_y)
        residual = max(math.dist(fit.design_to_stage(x, y * (-1.0 if mirror_y else 1.0)), p)
                       for (x, y), p in zip(d, s, strict=True))
        return fit, residual

    def save(self, path: Path) -> None:
        data = {"origin_um": list(self.origin_um), "rotation_deg": self.rotation_deg,
                "scale": self.scale, "mirror_y": self.mirror_y}
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: Path) -> StageCalibration:
        """Read a calibration: either the transform itself, or reference points to fit it
        from (``{"reference_points": [{"design_um": [x, y], "stage_um": [x, y]}, ...]}``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if "reference_points" in data:
                pairs = data["reference_points"]
                return cls.from_reference_points(
                    [tuple(p["design_um"]) for p in pairs], [tuple(p["stage_um"]) for p in pairs]
                )
            origin = tuple(float(v) for v in data["origin_um"])
            if len(origin) != 2:
                raise ValueError("origin_um must be [x, y]")
            return cls(origin, float(data.get("rotation_deg", 0.0)), float(data.get("scale", 1.0)),
                       bool(data.get("mirror_y", False)))
        except PufError as error:
            raise PufError(f"stage calibration {path}: {error}") from None
        except FileNotFoundError:
            raise PufError(f"no stage calibration at {path}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise PufError(f"cannot read the stage calibration {path}: {error!r}") from None
