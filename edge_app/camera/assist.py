"""The capture assist: is the label in the guide box sharp and well exposed enough for
verify to read it? Computed on the preview frame (a few milliseconds at 640 px).

The figures are verify's own (`edge_app.label_crop.Quality`, judged by
`edge_app.verify.CaptureLimits`), measured the same way on the preview: focus on the
label's border, found by segmentation at the size found in the frame
(`edge_app.label_size`), so any film and any magnification are judged alike; exposure
from the guide box's inner part (film and glyph): its median grey level (verify's
threshold is on grey; the green channel of a fluorescence photo reads about 1.6 times
brighter) and the saturated fraction of the whole box.

A hand's movement smears the picture one way only: the border's sides along it stay sharp
while the sides across it blur. Verify judges a label by its worst side; the assist also
tells a smear (the best side sharp, the worst not) from defocus (none sharp).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.app.i18n import N_
from edge_app.camera.base import GUIDE_FRACTION, STILL_SHORT_PX
from edge_app.errors import PufError
from edge_app.label_size import estimate_label_px
from edge_app.segment import segment, side_sharpness
from edge_app.verify import CaptureLimits

LIMITS = CaptureLimits()
INNER = 0.6  # the guide box's central part measured for exposure: inside the label's border
BRIGHT_LEVEL = 235.0  # a median this high leaves no headroom: saturation is near
# a blurred label whose worst side is below this share of its best is smeared by movement
# (defocus blurs every side alike: 0.7-1; a still photo's sides differ by up to 0.7)
SMEAR_SHARE = 0.6


@dataclass(frozen=True)
class CaptureAssist:
    sharpness: float  # verify's: the label border's worst side (0 when no label is found)
    sharp: bool  # sharp enough for verify, and not smeared by movement
    exposure: float  # median brightness (grey level, as verify measures it), 0-255
    clipped: float  # fraction of saturated pixel values in the box
    exposure_state: str  # "dark" | "ok" | "bright"
    hint: str  # one short line for the inspector, in English (in the app's catalogue: the app shows it translated)
    steadiness: float = 0.0  # the border's worst side's sharpness over its best side's (1: no smear)

    @property
    def ready(self) -> bool:
        return self.sharp and self.exposure_state == "ok"


def guide_box(width: int, height: int, label_px: float | None = None) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the square, centred, where the label should be: a label filling it
    is at the size verify expects in the still (`edge_app.camera.base.still_size`):
    `label_px` when the device fixes one (Settings), else STILL_LABEL_PX, which suits
    verify's crop best when it finds the size in each photo. At most the frame's shorter side."""
    if width < 8 or height < 8:
        raise PufError(f"a {width}x{height} frame is too small for a guide box")
    fraction = GUIDE_FRACTION if label_px is None else min(label_px / STILL_SHORT_PX, 1.0)
    side = round(min(width, height) * fraction)
    return (width - side) // 2, (height - side) // 2, side, side


def _region(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    height, width = image.shape[:2]
    x, y, w, h = (0, 0, width, height) if box is None else (int(v) for v in box)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise PufError(f"the box {box} leaves too little of the {width}x{height} frame to measure")
    return image[y0:y1, x0:x1]


def _border_sharpness(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """Sharpness (4,) of the border sides of the label nearest the box's centre, as
    verify measures it; None when no label is found."""
    label_px = estimate_label_px(image)
    if label_px is None:
        return None
    result = segment(image, label_px, k=1, size_tolerance=LIMITS.size_tolerance, rotation_deg=0.0)
    if not result.labels:
        return None
    height, width = image.shape[:2]
    x, y, w, h = (0, 0, width, height) if box is None else box
    centre = np.array([x + w / 2, y + h / 2])
    label = min(result.labels, key=lambda found: float(np.linalg.norm(np.subtract(found.centre, centre))))
    return side_sharpness(image, 1.0, label.corners[None], 0.05)[0]


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
    exposure = float(np.median(grey))
    clipped = float(np.count_nonzero(region > 254)) / region.size
    if exposure < LIMITS.min_exposure:
        state = "dark"
    elif clipped > LIMITS.max_clipped or exposure > BRIGHT_LEVEL:
        state = "bright"
    else:
        state = "ok"
    sides = _border_sharpness(image, box)
    sharpness = float(sides.min()) if sides is not None else 0.0
    steadiness = float(sides.min() / max(sides.max(), 1e-6)) if sides is not None else 0.0
    sharp = sharpness >= LIMITS.min_sharpness
    steady = sharp or sides is None or steadiness >= SMEAR_SHARE
    if state == "dark":  # noise, not detail, then makes the sharpness: say the light first
        hint = N_("Too dark: hold the device flat on the label, or raise the exposure")
    elif state == "bright":
        hint = N_("Too bright: lower the exposure")
    elif steady and not sharp:
        hint = N_("Out of focus: hold steady")
    elif not steady:
        hint = N_("Blurred by movement: hold steady")
    else:
        hint = N_("Ready")
    return CaptureAssist(sharpness, sharp, exposure, clipped, state, hint, steadiness)
