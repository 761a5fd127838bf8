"""The simulated fluorescence microscope: a stage and a 1920x1440 colour camera over a film.

It photographs the simulated film with the faults real captures have: stage error
(offset and a rotation of a degree or two, now and then a slip large enough to cut labels
at the field's edge), defocus, vignetting and uneven UV excitation, exposure changes,
shot and read noise, and dust. Each snapshot carries its ground truth: where every label
within view really is, with its id, pattern class and whether it lies whole in the frame.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.layout import BatchLayout
from fabrication.calibration import StageCalibration
from fabrication.microscope import Microscope, Snapshot
from fabrication.sim.film import FILM_PX_UM, EtchedFilm
from fabrication.sim.optics import Exposure, add_dust, expose


@dataclass(frozen=True)
class MicroscopeModel:
    width_px: int = 1920
    height_px: int = 1440
    pixel_size_um: float = 0.6
    exposure_ms: float = 40.0
    stage_error_um: float = 4.0  # standard deviation of the positioning error
    stage_rotation_deg: float = 2.0  # the camera's rotation error lies within +-this
    slip_probability: float = 0.03  # a slip of 60-200 µm that cuts labels at the edge
    defocus_px: tuple[float, float] = (0.4, 1.6)
    exposure_range: tuple[float, float] = (0.75, 1.3)  # relative to a well-exposed frame
    base_gain: float = 150.0  # green DN for film yield 1.0 at nominal exposure


def _rng(seed: int, *keys: float) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (reproducible captures)."""
    words = [seed & 0xFFFFFFFF] + [zlib.crc32(repr(round(k, 3)).encode()) for k in keys]
    return np.random.default_rng(words)


def draw_exposure(rng: np.random.Generator, model: MicroscopeModel) -> Exposure:
    """One capture's light and sensor, as the microscope varies them from shot to shot."""
    return Exposure(
        gain=model.base_gain * rng.uniform(*model.exposure_range),
        defocus_sigma_px=rng.uniform(*model.defocus_px),
        vignetting=rng.uniform(0.15, 0.4),
        excitation_tilt=(rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)),
    )


def dust_counts(rng: np.random.Generator) -> tuple[int, int]:
    """Dust specks and fibres on one frame."""
    specks = int(rng.integers(0, 6))
    return specks, int(rng.integers(0, 2))


def image_to_design(center_um: tuple[float, float], angle_rad: float, scale_um: float,
                    size: tuple[int, int]) -> np.ndarray:
    """2x3 affine taking image pixel centres (u, v) to design µm."""
    w, h = size
    c, s = math.cos(angle_rad) * scale_um, math.sin(angle_rad) * scale_um
    cu, cv = (w - 1) / 2.0, (h - 1) / 2.0
    return np.array([[c, -s, center_um[0] - c * cu + s * cv], [s, c, center_um[1] - s * cu - c * cv]])


def render_view(film: EtchedFilm, to_design: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The film's emission seen through the affine `to_design` (image px -> design µm)."""
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float) @ to_design.T
    i0 = int(math.floor(corners[:, 0].min() / FILM_PX_UM)) - 4
    j0 = int(math.floor(corners[:, 1].min() / FILM_PX_UM)) - 4
    i1 = int(math.ceil(corners[:, 0].max() / FILM_PX_UM)) + 4
    j1 = int(math.ceil(corners[:, 1].max() / FILM_PX_UM)) + 4
    return view_of(film.render(i0, j0, i1 - i0, j1 - j0), (i0, j0), to_design, size)


def view_of(emission: np.ndarray, origin: tuple[int, int], to_design: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Emission rendered over film pixels from `origin` (i0, j0), seen through the affine
    `to_design` (image px -> design µm) as the camera's pixels sample it."""
    to_film = to_design / FILM_PX_UM
    to_film[:, 2] -= origin
    return cv2.warpAffine(emission, to_film, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def label_truth(layout: BatchLayout, to_image, size: tuple[int, int]) -> list[dict]:
    """Ground truth of every label near the view: outer-border corners in image pixels
    (top-left, top-right, bottom-right, bottom-left in design orientation)."""
    w, h = size
    half = layout.label_size_um / 2
    labels = []
    for field in range(layout.fields_per_batch):
        fx, fy = layout.field_center_um(field)
        fw, fh = layout.field_size_um
        centre = to_image(fx, fy)
        if not (-fw < centre[0] < w + fw and -fh < centre[1] < h + fh):
            continue  # the view is smaller than a field's neighbourhood: skip far fields
        for slot in range(layout.labels_per_field):
            cx, cy = layout.label_center_um(field, slot)
            corners = [to_image(cx + dx * half, cy + dy * half)
                       for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            if max(xs) < 0 or min(xs) > w - 1 or max(ys) < 0 or min(ys) > h - 1:
                continue
            row, col = divmod(slot, layout.label_cols)
            labels.append({
                "label_id": layout.label_id(field, slot),
                "field": field,
                "slot": slot,
                "row": row,
                "col": col,
                "pattern": layout.pattern_of(field, slot),
                "corners_px": [[round(x, 2), round(y, 2)] for x, y in corners],
                "whole": min(xs) >= 0 and min(ys) >= 0 and max(xs) <= w - 1 and max(ys) <= h - 1,
            })
    return labels


class SimulatedMicroscope(Microscope):
    def __init__(self, film: EtchedFilm, layout: BatchLayout, calibration: StageCalibration,
                 seed: int = 0, model: MicroscopeModel = MicroscopeModel()) -> None:
        self.film = film
        self.layout = layout
        self.calibration = calibration
        self.seed = seed
        self.model = model
        self._position = (0.0, 0.0)
        self._shots: dict[tuple[float, float], int] = {}

    @property
    def pixel_size_um(self) -> float:
        return self.model.pixel_size_um

    def move_to(self, x_um: float, y_um: float) -> None:
        self._position = (float(x_um), float(y_um))

    def position_um(self) -> tuple[float, float]:
        return self._position

    def snap(self) -> Snapshot:
        m = self.model
        shot = self._shots.get(self._position, 0)
        self._shots[self._position] = shot + 1
        rng = _rng(self.seed, *self._position, shot)
        error = rng.normal(0.0, m.stage_error_um, 2)
        if rng.random() < m.slip_probability:
            angle = rng.uniform(0, 2 * math.pi)
            error += rng.uniform(60, 200) * np.array([math.cos(angle), math.sin(angle)])
        true_stage = (self._position[0] + error[0], self._position[1] + error[1])
        centre = self.calibration.stage_to_design(*true_stage)
        angle = math.radians(-self.calibration.rotation_deg + rng.uniform(-m.stage_rotation_deg,
                                                                           m.stage_rotation_deg))
        size = (m.width_px, m.height_px)
        to_design = image_to_design(centre, angle, m.pixel_size_um / self.calibration.scale, size)
        emission = render_view(self.film, to_design, size)
        exposure = draw_exposure(rng, m)
        frame = expose(emission, exposure, rng)
        add_dust(frame, rng, *dust_counts(rng))
        to_image_m = cv2.invertAffineTransform(to_design)

        def to_image(x: float, y: float) -> tuple[float, float]:
            u, v = to_image_m @ (x, y, 1.0)
            return float(u), float(v)

        truth = {
            "image_size": list(size),
            "pixel_size_um": m.pixel_size_um,
            "design_to_image": to_image_m.round(8).tolist(),
            "stage_error_um": [round(float(e), 3) for e in error],
            "defocus_sigma_px": round(exposure.defocus_sigma_px, 3),
            "labels": label_truth(self.layout, to_image, size),
        }
        return Snapshot(frame, m.exposure_ms, self._position,
                        m.pixel_size_um, truth)
