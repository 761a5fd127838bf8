"""Augmentation of label crops: the paper's, plus what real re-captures vary in.

The paper rotated every crop uniformly in 0-360 degrees and shifted the HSV V channel by
x in (-45, 90). Crops here arrive in canonical orientation (segmentation reads the
glyph), and this project's first feasibility runs found canonical orientation the
biggest single lever (12x fewer misses at FAR 1e-5), so the default rotation is the
small residual of segmentation (+-4 degrees); `rotation_deg=180` is the paper's 0-360.

On top: defocus and motion blur, sensor noise, exposure and gamma, a small perspective
tilt, scale and shift (segmentation's corner error), and JPEG. Each is a plain
numpy/OpenCV function of (crop, rng), so the same code runs inside `tf.data` (through
`tf.numpy_function`, see `trainer.data`) and in `--materialize`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edge_app.errors import PufError
from fabrication.blur import motion_blur


@dataclass(frozen=True)
class Augment:
    rotation_deg: float = 4.0  # uniform in +-this; 180 is the paper's 0-360
    v_shift: tuple[float, float] = (-45.0, 90.0)  # the paper's HSV V shift, scaled to the crop
    v_shift_p: float = 0.5
    gain: tuple[float, float] = (0.7, 1.4)  # exposure
    gamma: tuple[float, float] = (0.75, 1.35)
    defocus_sigma: tuple[float, float] = (0.0, 1.3)
    defocus_p: float = 0.5
    motion_px: tuple[float, float] = (1.0, 5.0)
    motion_p: float = 0.3
    noise_sigma: tuple[float, float] = (0.0, 6.0)  # DN
    tilt: float = 0.03  # corner displacement as a fraction of the side (perspective)
    scale: tuple[float, float] = (0.97, 1.03)
    shift: float = 0.015  # fraction of the side
    jpeg_quality: tuple[int, int] = (55, 95)
    jpeg_p: float = 0.5

    def __post_init__(self) -> None:
        for name in ("v_shift_p", "defocus_p", "motion_p", "jpeg_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PufError(f"augmentation {name} must be a probability, got {getattr(self, name)}")
        if not 0 <= self.rotation_deg <= 180:
            raise PufError(f"rotation must be 0-180 degrees either way, got {self.rotation_deg}")
        if not 0 <= self.tilt < 0.2 or not 0 <= self.shift < 0.2:
            raise PufError("tilt and shift must be small fractions of the side (< 0.2)")
        object.__setattr__(self, "v_shift", tuple(self.v_shift))

    def to_dict(self) -> dict:
        return asdict(self)


NONE = Augment(rotation_deg=0, v_shift_p=0, gain=(1, 1), gamma=(1, 1), defocus_p=0, motion_p=0,
               noise_sigma=(0, 0), tilt=0, scale=(1, 1), shift=0, jpeg_p=0)


def geometry(crop: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """Rotation, perspective tilt, scale and shift in one warp about the crop's centre."""
    h, w = crop.shape[:2]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    angle = np.radians(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
    scale = rng.uniform(*aug.scale)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    dst = (src - c) @ rot.T + c
    dst += rng.uniform(-aug.tilt, aug.tilt, dst.shape) * w
    dst += rng.uniform(-aug.shift, aug.shift, 2) * w
    warp = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    return cv2.warpPerspective(crop, warp, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)


def photometry(crop: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """The paper's V shift, then exposure, gamma, blur, noise and JPEG."""
    if rng.random() < aug.v_shift_p:
        hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
        v = hsv[:, :, 2].astype(np.float32) + rng.uniform(*aug.v_shift)
        hsv[:, :, 2] = np.clip(v, 0, 255).astype(np.uint8)
        crop = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    x = crop.astype(np.float32) / 255.0
    x = np.power(np.clip(x * rng.uniform(*aug.gain), 0, 1), rng.uniform(*aug.gamma))
    if rng.random() < aug.defocus_p:
        sigma = rng.uniform(*aug.defocus_sigma)
        if sigma > 0.2:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
    if rng.random() < aug.motion_p:
        x = motion_blur(x, int(round(rng.uniform(*aug.motion_px))) | 1, rng.uniform(0, 180))
    sigma = rng.uniform(*aug.noise_sigma) / 255.0
    if sigma > 0:
        x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < aug.jpeg_p:
        quality = int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def augment(crop: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of a BGR uint8 crop (same size)."""
    return photometry(geometry(crop, aug, rng), aug, rng)


# The paper's augmentation: full rotation (the default of `materialize`).
PAPER = Augment(rotation_deg=180)
