"""The capture assist: is the label in the guide box sharp and well exposed enough for
verify to read it? Computed on the preview frame (well under a millisecond at 640 px).

The figures are verify's own (`edge_app.segment.Quality`, judged by
`edge_app.verify.CaptureLimits`), measured the same way on the preview: the guide box's
inner part (film and glyph, not the label's border) brought to the scale of verify's crop,
its mean |Laplacian| over its mean grey level for sharpness, its median grey level for
exposure (verify's threshold is on grey; the green channel of a fluorescence photo reads
about 1.6 times brighter), and the saturated fraction of the whole box.

A hand's movement smears the picture one way only, which the Laplacian (a sum over
directions) partly misses: the weakest of four directional second differences is checked
too. A still, sharp photo's weakest direction measures 0.4-0.5 of its Laplacian figure, so
the same blur limit applied to that direction is `DIRECTIONAL_SHARE` of verify's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.camera.base import GUIDE_FRACTION
from edge_app.errors import PufError
from edge_app.verify import CaptureLimits

LIMITS = CaptureLimits()
CROP_PX = 128  # the crop verify's quality figures are measured on (edge_app.segment's default crop size)
INNER = 0.6  # the guide box's central part measured for focus and exposure: inside the label's border
BRIGHT_LEVEL = 235.0  # a median this high leaves no headroom: saturation is near
DIRECTIONAL_SHARE = 0.4
_DIRECTIONS = [np.array(k, np.float32) / d for k, d in (  # second differences across 0, 90, 45, 135 degrees
    ([[0, 0, 0], [1, -2, 1], [0, 0, 0]], 1), ([[0, 1, 0], [0, -2, 0], [0, 1, 0]], 1),
    ([[0, 0, 1], [0, -2, 0], [1, 0, 0]], 2), ([[1, 0, 0], [0, -2, 0], [0, 0, 1]], 2))]


@dataclass(frozen=True)
class CaptureAssist:
    sharpness: float  # mean |Laplacian| over the mean level, at verify's crop scale
    sharp: bool  # sharp enough for verify, and not smeared by movement
    exposure: float  # median brightness (grey level, as verify measures it), 0-255
    clipped: float  # fraction of saturated pixel values in the box
    exposure_state: str  # "dark" | "ok" | "bright"
    hint: str  # one short line for the inspector
    steadiness: float = 0.0  # the weakest direction's second differences over the mean level (movement)

    @property
    def ready(self) -> bool:
        return self.sharp and self.exposure_state == "ok"


def guide_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the square, centred, where the label should be: a label filling it
    is at the size verify expects in the still (`edge_app.camera.base.still_size`)."""
    if width < 8 or height < 8:
        raise PufError(f"a {width}x{height} frame is too small for a guide box")
    side = round(min(width, height) * GUIDE_FRACTION)
    return (width - side) // 2, (height - side) // 2, side, side


def _region(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    height, width = image.shape[:2]
    x, y, w, h = (0, 0, width, height) if box is None else (int(v) for v in box)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise PufError(f"the box {box} leaves too little of the {width}x{height} frame to measure")
    return image[y0:y1, x0:x1]


def assess(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> CaptureAssist:
    """Focus and exposure of the label in `box` (the whole frame when None) of a BGR or
    grey preview frame."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise PufError("the capture assist needs an 8-bit BGR or grey image")
    region = _region(image, box)
    side = min(region.shape[:2])
    h, w = region.shape[:2]
    inner = round(side * INNER)
    y0, x0 = (h - inner) // 2, (w - inner) // 2
    grey = region[y0:y0 + inner, x0:x0 + inner]
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey, cv2.COLOR_BGR2GRAY)
    target = max(8, round(inner * CROP_PX / side))
    if target < inner:
        grey = cv2.resize(grey, (target, target), interpolation=cv2.INTER_AREA)
    level = float(grey.mean())
    sharpness = float(cv2.convertScaleAbs(cv2.Laplacian(grey, cv2.CV_16S)).mean()) / max(level, 1.0)
    values = grey.astype(np.float32)
    steadiness = min(float(np.abs(cv2.filter2D(values, -1, k)).mean()) for k in _DIRECTIONS) / max(level, 1.0)
    exposure = float(np.median(grey))
    clipped = float(np.count_nonzero(region > 254)) / region.size
    if exposure < LIMITS.min_exposure:
        state = "dark"
    elif clipped > LIMITS.max_clipped or exposure > BRIGHT_LEVEL:
        state = "bright"
    else:
        state = "ok"
    focused = sharpness >= LIMITS.min_sharpness
    steady = steadiness >= DIRECTIONAL_SHARE * LIMITS.min_sharpness
    sharp = focused and steady
    if state == "dark":  # noise, not detail, then makes the sharpness: say the light first
        hint = "Too dark: hold the device flat on the label, or raise the exposure"
    elif state == "bright":
        hint = "Too bright: lower the exposure"
    elif not focused:
        hint = "Out of focus: hold steady"
    elif not steady:
        hint = "Blurred by movement: hold steady"
    else:
        hint = "Ready"
    return CaptureAssist(sharpness, sharp, exposure, clipped, state, hint, steadiness)
