"""The simulated handheld camera: a second capture model for the queries a device sees.

An inspector's device photographs one label through a macro lens at whatever angle it is
held: another resolution than the factory microscope, any in-plane rotation, a small
perspective tilt, its own white balance, motion blur from the hand, and JPEG compression.
These are the genuine queries: new captures of enrolled labels, never augmented copies of
the enrollment image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.blur import motion_blur
from fabrication.sim.film import FILM_PX_UM
from fabrication.sim.optics import Exposure, add_dust, expose


class Scene(Protocol):
    """What the camera photographs: emission over film pixels (an `EtchedFilm`, or a print
    of one: `fabrication.sim.clone`)."""

    def render(self, i0: int, j0: int, w: int, h: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FieldCameraModel:
    width_px: int = 800
    height_px: int = 600
    pixel_size_um: tuple[float, float] = (0.55, 0.8)  # range over captures (working distance)
    rotation_deg: tuple[float, float] = (0.0, 360.0)
    tilt_deg: float = 8.0  # perspective: the device held up to this far off square
    offset_frac: float = 0.12  # label centre off the image centre, as a fraction of its size
    motion_blur_px: tuple[float, float] = (0.0, 4.0)
    defocus_px: tuple[float, float] = (0.3, 1.2)
    jpeg_quality: tuple[int, int] = (60, 95)
    white_balance: float = 0.15  # each channel gain within 1 +- this
    gain: tuple[float, float] = (110.0, 190.0)


def _homography(label_center_um: tuple[float, float], size_um: float, rng: np.random.Generator,
                model: FieldCameraModel) -> tuple[np.ndarray, float]:
    """Image px -> design µm, for a camera tilted, rotated and offset about the label."""
    w, h = model.width_px, model.height_px
    px = rng.uniform(*model.pixel_size_um)
    angle = math.radians(rng.uniform(*model.rotation_deg))
    offset = rng.uniform(-model.offset_frac, model.offset_frac, 2) * size_um
    # the image corners seen on an untilted film, then each corner pushed in or out by the
    # tilt (a small homography), keeping the mapping smooth and invertible
    half_w, half_h = w / 2 * px, h / 2 * px
    tilt = math.tan(math.radians(model.tilt_deg))
    tx, ty = rng.uniform(-tilt, tilt, 2)
    image = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    local = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    stretch = 1.0 + (local[:, 0] / half_w) * tx / 2 + (local[:, 1] / half_h) * ty / 2
    local = local * stretch[:, None]
    c, s = math.cos(angle), math.sin(angle)
    design = local @ np.array([[c, s], [-s, c]]) + np.add(label_center_um, offset)
    return cv2.getPerspectiveTransform(image, design.astype(np.float32)), px


def capture_label(film: Scene, layout: BatchLayout, field: int, slot: int, seed: int,
                  model: FieldCameraModel = FieldCameraModel(),
                  tint_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, dict]:
    """A handheld photo of one label: the decoded JPEG (BGR uint8) and its ground truth.
    `tint_bgr`: the scene's colour relative to the film's green emission (a print's ink)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, field, slot, 0xF1E1D])
    centre = layout.label_center_um(field, slot)
    to_design, px = _homography(centre, layout.label_size_um, rng, model)
    w, h = model.width_px, model.height_px
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32), to_design)[0]
    i0, j0 = (np.floor(corners.min(0) / FILM_PX_UM) - 4).astype(int)
    i1, j1 = (np.ceil(corners.max(0) / FILM_PX_UM) + 4).astype(int)
    emission = film.render(int(i0), int(j0), int(i1 - i0), int(j1 - j0))
    to_film = np.diag([1 / FILM_PX_UM, 1 / FILM_PX_UM, 1.0]) @ to_design
    to_film = np.array([[1, 0, -i0], [0, 1, -j0], [0, 0, 1]]) @ to_film
    # the film is sampled finer than this camera's pixels: smooth before resampling
    emission = cv2.GaussianBlur(emission, (0, 0), 0.5 * px / FILM_PX_UM)
    view = cv2.warpPerspective(emission, to_film, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
    blur = rng.uniform(*model.motion_blur_px)
    if blur >= 1.0:
        view = motion_blur(view, int(round(blur)) | 1, rng.uniform(0, 180))
    wb = tuple(rng.uniform(1 - model.white_balance, 1 + model.white_balance, 3) * np.asarray(tint_bgr))
    exposure = Exposure(
        gain=rng.uniform(*model.gain),
        defocus_sigma_px=rng.uniform(*model.defocus_px),
        vignetting=rng.uniform(0.1, 0.35),
        excitation_tilt=(rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25)),
        electrons_per_dn=6.0,
        read_noise_dn=2.5,
        white_balance_bgr=wb,
    )
    frame = expose(view, exposure, rng)
    add_dust(frame, rng, specks=int(rng.integers(0, 3)), fibres=0)
    quality = int(rng.integers(model.jpeg_quality[0], model.jpeg_quality[1] + 1))
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise PufError(f"OpenCV could not round-trip a JPEG of quality {quality}")
    frame = decoded
    to_image = np.linalg.inv(to_design)
    half = layout.label_size_um / 2
    label_corners = np.array([[[centre[0] + dx * half, centre[1] + dy * half]
                               for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]], np.float32)
    truth = {
        "label_id": layout.label_id(field, slot),
        "pattern": layout.pattern_of(field, slot),
        "corners_px": cv2.perspectiveTransform(label_corners, to_image)[0].round(2).tolist(),
        "pixel_size_um": round(px, 4),
        "jpeg_quality": quality,
        "motion_blur_px": round(blur, 2),
    }
    return frame, truth
