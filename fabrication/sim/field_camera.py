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
from fabrication.sim.optics import Exposure, dust_shade, expose, illumination_at

WINDOW_MARGIN = 0.15  # of the label's side around it in a windowed photo: segmentation sees film beyond the border
JPEG_BLOCK_PX = 16  # a windowed photo starts and ends on the whole photo's JPEG blocks
_WINDOW_PAD_PX = 8  # image px formed around a window and cut off: blur reaches in from there


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


@dataclass(frozen=True)
class HandheldDraws:
    """What one handheld photo's hand, light and sensor did: everything drawn before the
    image is formed, so a window of the photo and the whole photo are the same shot."""

    to_design: np.ndarray  # image px -> design µm (3x3 homography)
    pixel_size_um: float
    blur_px: float
    blur_angle_deg: float  # ignored when blur_px < 1
    exposure: Exposure


def draw_photo(rng: np.random.Generator, centre_um: tuple[float, float], size_um: float,
               model: FieldCameraModel, tint_bgr: tuple[float, float, float]) -> HandheldDraws:
    """The shot's draws, in the order the camera has always drawn them (seeds keep their photos)."""
    to_design, px = _homography(centre_um, size_um, rng, model)
    blur = rng.uniform(*model.motion_blur_px)
    angle = rng.uniform(0, 180) if blur >= 1.0 else 0.0
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
    return HandheldDraws(to_design, px, blur, angle, exposure)


def _view(scene: Scene, draws: HandheldDraws, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The emission the lens sees over image px [x0, x0 + w) x [y0, y0 + h): only that
    part of the film is rendered."""
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    to_design = draws.to_design @ shift
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32), to_design)[0]
    i0, j0 = (np.floor(corners.min(0) / FILM_PX_UM) - 4).astype(int)
    i1, j1 = (np.ceil(corners.max(0) / FILM_PX_UM) + 4).astype(int)
    emission = scene.render(int(i0), int(j0), int(i1 - i0), int(j1 - j0))
    to_film = np.diag([1 / FILM_PX_UM, 1 / FILM_PX_UM, 1.0]) @ to_design
    to_film = np.array([[1, 0, -i0], [0, 1, -j0], [0, 0, 1]]) @ to_film
    # the film is sampled finer than this camera's pixels: smooth before resampling
    emission = cv2.GaussianBlur(emission, (0, 0), 0.5 * draws.pixel_size_um / FILM_PX_UM)
    view = cv2.warpPerspective(emission, to_film, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
    if draws.blur_px >= 1.0:
        view = motion_blur(view, int(round(draws.blur_px)) | 1, draws.blur_angle_deg)
    return view


def label_window(corners_px: np.ndarray, model: FieldCameraModel) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): the label and WINDOW_MARGIN of its side around it, widened to JPEG's
    16 px blocks (4:2:0 chroma: the blocks the whole photo is compressed in) and kept in the frame."""
    corners = np.asarray(corners_px, np.float64).reshape(4, 2)
    side = float(np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1).mean())
    lo = np.floor((corners.min(0) - WINDOW_MARGIN * side) / JPEG_BLOCK_PX) * JPEG_BLOCK_PX
    hi = np.ceil((corners.max(0) + WINDOW_MARGIN * side) / JPEG_BLOCK_PX) * JPEG_BLOCK_PX
    x0, y0 = (int(v) for v in np.maximum(lo, 0))
    x1, y1 = int(min(hi[0], model.width_px)), int(min(hi[1], model.height_px))
    return x0, y0, x1 - x0, y1 - y0


def capture_label(film: Scene, layout: BatchLayout, field: int, slot: int, seed: int,
                  model: FieldCameraModel = FieldCameraModel(),
                  tint_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0),
                  window: bool = False) -> tuple[np.ndarray, dict]:
    """A handheld photo of one label: the decoded JPEG (BGR uint8) and its ground truth.
    `tint_bgr`: the scene's colour relative to the film's green emission (a print's ink).
    `window`: only the label's window of the photo (`label_window`), the same shot (the
    same draws, the same film, the same light there, dust and JPEG quality) for a fraction
    of the rendering; only the sensor noise's realisation differs. Its truth gives the
    label's corners in the window and the window's place in the photo (`window_px`)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, field, slot, 0xF1E1D])
    centre = layout.label_center_um(field, slot)
    draws = draw_photo(rng, centre, layout.label_size_um, model, tint_bgr)
    w, h = model.width_px, model.height_px
    half = layout.label_size_um / 2
    label_corners = np.array([[[centre[0] + dx * half, centre[1] + dy * half]
                               for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]], np.float32)
    corners_px = cv2.perspectiveTransform(label_corners, np.linalg.inv(draws.to_design))[0]
    x0, y0, ww, wh = label_window(corners_px, model) if window else (0, 0, w, h)
    pad = _WINDOW_PAD_PX if window else 0  # defocus and motion blur reach this far in
    px0, py0 = max(x0 - pad, 0), max(y0 - pad, 0)
    px1, py1 = min(x0 + ww + pad, w), min(y0 + wh + pad, h)
    view = _view(film, draws, px0, py0, px1 - px0, py1 - py0)
    light = None
    if window:  # the window's share of the frame's vignetting and uneven excitation
        x = (np.arange(px0, px1, dtype=np.float64)[None, :] - (w - 1) / 2) / ((w - 1) / 2)
        y = (np.arange(py0, py1, dtype=np.float64)[:, None] - (h - 1) / 2) / ((h - 1) / 2)
        light = illumination_at(x, y, draws.exposure)
    frame = expose(view, draws.exposure, rng, light)[y0 - py0:y0 - py0 + wh, x0 - px0:x0 - px0 + ww]
    specks = int(rng.integers(0, 3))
    if specks:  # drawn over the whole frame, as ever, and the window's part of it applied
        shade = dust_shade((h, w), rng, specks, 0)[y0:y0 + wh, x0:x0 + ww]
        frame = np.ascontiguousarray(frame)
        frame[:] = (frame * shade[:, :, None]).astype(np.uint8)
    quality = int(rng.integers(model.jpeg_quality[0], model.jpeg_quality[1] + 1))
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise PufError(f"OpenCV could not round-trip a JPEG of quality {quality}")
    truth = {
        "label_id": layout.label_id(field, slot),
        "pattern": layout.pattern_of(field, slot),
        "corners_px": (corners_px - np.array([x0, y0], np.float32)).round(2).tolist(),
        "pixel_size_um": round(draws.pixel_size_um, 4),
        "jpeg_quality": quality,
        "motion_blur_px": round(draws.blur_px, 2),
    }
    if window:
        truth["window_px"] = [x0, y0, ww, wh]
    return decoded, truth
