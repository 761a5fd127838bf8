"""The size of the labels in a photo, found from the photo alone.

Every label is a dark square ring; the film it encloses is a light square hole in the
image's dark regions. The image is searched on a pyramid of 2x reductions, each level
for labels of about 40-160 of its own pixels, with the same local-mean dark threshold as
segmentation (uneven light does not matter). A square hole that does not lie inside a
larger square hole (a glyph such as "口" has one) is a label's film; when its ring stands
alone, the ring's outer outline is square too and the mean of the two sides is the
border's middle line, which cancels the threshold's bias; when rings have merged (a
factory field at high laser power) the hole alone gives the side. The answer is the
median side of the largest group of labels of one size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_app.errors import PufError
from edge_app.segment import as_uint8

MIN_LABEL_PX = 40.0
MIN_SET_LABEL_PX = 16.0  # the smallest label side a user may fix (`parse_label_px`)
_LEVEL_PX = (40.0, 160.0)  # label sides looked for at each pyramid level, in its pixels
_DARK_RATIO = 0.6  # as segmentation: darker than this fraction of the neighbourhood's mean
_SAME_SIZE = 0.12  # labels within this relative size of each other form one group


def parse_label_px(value: str | float | None, largest: float | None = None) -> float | None:
    """A label size as a user gives it (`puf verify --label-px`, the app's Settings): "auto"
    or None (found in each photo: None), or a side of at least 16 px and at most `largest`
    (the photo's side, when known). Anything else is a PufError saying what is accepted."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        side = float(value)
    except (TypeError, ValueError):
        side = math.nan
    if isinstance(value, bool) or not math.isfinite(side):
        raise PufError(f"label size {value!r} is neither auto nor a number of px")
    if side < MIN_SET_LABEL_PX:
        raise PufError(f"a label side of {value} px is too small (at least {MIN_SET_LABEL_PX:g})")
    if largest is not None and side > largest:
        raise PufError(f"a label side of {value} px does not fit in the {largest:g} px photo (at most {largest:g})")
    return side


def estimate_label_px(image: np.ndarray, border_frac: float = 0.05) -> float | None:
    """The outer side in px of the labels in a photo (gray, BGR, 8/16-bit or float), at any
    scale from about 40 px to the image's size; None when no label ring is found.
    `border_frac` is the border width over the label side."""
    if not 0 < border_frac < 0.25:
        raise PufError(f"border fraction {border_frac} must lie between 0 and 0.25")
    image = as_uint8(image)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    sides: list[float] = []
    scale = 1
    while min(gray.shape) >= _LEVEL_PX[0]:
        low = MIN_LABEL_PX if scale == 1 else _LEVEL_PX[0] * 1.5
        sides += [side * scale for side in _ring_sides(gray, low, border_frac)]
        if min(gray.shape) < 2 * _LEVEL_PX[0] * 1.5:
            break
        gray = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
        scale *= 2
    if not sides:
        return None
    values = np.sort(np.array(sides))
    # the largest group of one size: for each side, how many lie within _SAME_SIZE of it; of
    # groups as large, the larger squares (a glyph's closed shapes lie inside labels)
    counts = np.searchsorted(values, values * (1 + _SAME_SIZE), side="right") - np.arange(len(values))
    start = int(np.flatnonzero(counts == counts.max())[-1])
    return float(np.median(values[start:start + counts[start]]))


def _ring_sides(gray: np.ndarray, low: float, border_frac: float) -> list[float]:
    """Outer sides (this level's px) of the square rings of `low`-160 px in `gray`."""
    height, width = gray.shape
    high = min(_LEVEL_PX[1], min(height, width))
    if high < low:
        return []
    window = int(max(low * 0.6, 9)) | 1
    coarse = cv2.resize(gray, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    mean = cv2.resize(cv2.blur(coarse, (window // 4 | 1, window // 4 | 1)), (width, height),
                      interpolation=cv2.INTER_LINEAR)
    dark = cv2.compare(cv2.blur(gray, (3, 3)), cv2.convertScaleAbs(mean, alpha=_DARK_RATIO), cv2.CMP_LT)
    contours, hierarchy = cv2.findContours(dark, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    inner_low, inner_high = low * (1 - 2 * border_frac) * 0.9, high * (1 - 2 * border_frac)
    found: list[tuple[float, float, float, float]] = []  # centre x, y, hole side, outer side
    for index, contour in enumerate(contours):
        parent = int(hierarchy[0, index, 3])
        if parent < 0:
            continue  # only holes: the film a ring encloses
        hole = _square_side(contour, inner_low, inner_high)
        if hole is None:
            continue
        outer = hole / (1 - 2 * border_frac)
        ring = _square_side(contours[parent], outer * 0.8, outer * 1.25)
        (cx, cy), _, _ = cv2.minAreaRect(contour)
        found.append((cx, cy, hole, outer if ring is None else (ring + hole) / 2 / (1 - border_frac)))
    # a square hole inside a larger one is a glyph's, not a label's
    return [outer for cx, cy, hole, outer in found
            if not any(other > 1.5 * hole and abs(cx - ox) < other / 2 and abs(cy - oy) < other / 2
                       for ox, oy, other, _ in found)]


def _square_side(contour: np.ndarray, low: float, high: float) -> float | None:
    """The side of a contour that is a filled square of side `low`-`high`, else None."""
    x, y, w, h = cv2.boundingRect(contour)
    if max(w, h) < low or min(w, h) > high * math.sqrt(2):
        return None
    (_, _), (rw, rh), _ = cv2.minAreaRect(contour)
    if min(rw, rh) < low or max(rw, rh) > high or max(rw, rh) > 1.2 * min(rw, rh):
        return None
    if cv2.contourArea(contour) < 0.85 * rw * rh:
        return None
    return (rw + rh) / 2
