"""Stage calibration fitting: where the design sits on the microscope stage, from
measured reference points.

The calibration itself and its file (BATCH_DIR/stage/calibration.json) belong to
`fabrication.stage_calibration`, which segmentation reads too; this module adds what only the
factory does: fitting the similarity transform to two or more reference points (for
example the outer corners of the first and last label), with or without a mirrored y axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_app.errors import PufError
from fabrication import stage_calibration


class StageCalibration(stage_calibration.StageCalibration):
    """The stage calibration, which can also be fitted to reference points."""

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

    @classmethod
    def load(cls, path: Path) -> StageCalibration:  # type: ignore[override]
        """Read a calibration: the transform itself, or reference points fitted here."""
        return super().load(path, fit=cls.from_reference_points)
