"""Segmentation: find the square labels in a photo and cut each into a fixed-size crop.

Two methods:

* ``"paper"``, the source paper's: grayscale, Sobel x minus Sobel y, 9x9 box blur,
  binarise at 90, the K largest contours, their minimum-area rectangles, crop. It
  checks nothing: a label cut by the field's edge or a blob of dust is cropped too.
* ``"fast"`` (the default): the borders are found on an image reduced 4x (a label is
  about 80 px there), where dark border pixels are those well below their neighbourhood's
  mean, so uneven excitation and exposure do not matter. Each closed ring, or the film
  it encloses when neighbouring rings have merged, gives a quadrilateral. Its four sides
  are then refined at full resolution from the border's outer edge, sampled along short
  profiles across each side and fitted with robust lines, and only the crops are warped.
  Every candidate is checked (whole in the image, expected size, square, dark border)
  and every crop gets a quality record.

Corners are returned as TL, TR, BR, BL of the label in design orientation. In a factory
field the labels share the field's orientation (known within a few degrees), passed as
`rotation_deg`; for a handheld photo (`rotation_deg=None`) the border fixes the angle only
modulo 90 degrees and the glyph decides among the four, given pattern templates (see
`edge_app.orientation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from edge_app.errors import CaptureUnusable, PufError
from edge_app.label_crop import CROP_SIZE, Quality
from edge_app.orientation import GlyphMatch, PatternTemplates, canonical, classify_glyph
from edge_app.photo_size import check_photo_size

METHODS = ("fast", "paper")

# Why a candidate was not kept; the keys are what tables and the registry show.
REASONS = {
    "edge": "cut by the image edge",
    "size": "not the expected size",
    "shape": "not square",
    "border": "no dark border",
    "excess": "more labels than asked for",
}

_REDUCED_LABEL_PX = 80  # the fast method looks for labels about this size
_DARK_RATIO = 0.6  # a border pixel is darker than this fraction of its neighbourhood
_MIN_BORDER_CONTRAST = 0.25
ORIENTATION_MARGIN = 0.05  # a glyph whose best quarter turn leads by less is "ambiguous"
_MAX_SKEW_DEG = 12.0  # a handheld camera's tilt bends the square a little
_PROFILES = 16  # edge profiles across each side
_FITS = 3  # line fits a side's edge points get at most, each without the points far from the last
_FOUR = np.arange(4)
_AROUND = np.array([-1, 0, 1])  # a profile's peak and its neighbours
_BESIDE = np.array([-1, 0, 1], np.float32)[:, None]  # three parallel profiles a pixel apart
_OUTWARD = np.array([1, -1], np.float32)  # a clockwise side's (dy, dx) times this: its outward normal
_PROFILE_T = np.linspace(0.12, 0.88, _PROFILES, dtype=np.float32)  # where, along the side
# the edge profiles sharpness is measured on: from 1.2 border widths inside the outer edge to
# 2 outside, at 40 points; the dark level is the deepest inside, the film's the mean beyond 1
_EDGE_OFFSETS = np.linspace(-1.2, 2.0, 40, dtype=np.float32)
_BORDER, _FILM = _EDGE_OFFSETS <= 0, _EDGE_OFFSETS >= 1.0
_FILM_COUNT = int(_FILM.sum())


@dataclass
class FoundLabel:
    corners: np.ndarray  # (4, 2) image px: TL, TR, BR, BL of the outer border
    crop: np.ndarray  # (S, S) or (S, S, 3) uint8, deskewed, canonical when orientation allows
    quality: Quality
    # "prior": from the expected rotation; "glyph": decided by the glyph; "ambiguous": the
    # glyph's best guess without a clear margin; "unknown": rotation free and no templates
    orientation: str
    glyph: GlyphMatch | None = None

    @property
    def centre(self) -> tuple[float, float]:
        x, y = self.corners.mean(axis=0)
        return float(x), float(y)

    @property
    def angle_deg(self) -> float:
        """Direction of the label's top edge, degrees clockwise on screen."""
        top = (self.corners[1] - self.corners[0]) + (self.corners[2] - self.corners[3])
        return math.degrees(math.atan2(top[1], top[0]))

    @property
    def side_px(self) -> float:
        edges = self.corners - np.roll(self.corners, -1, axis=0)
        return float(np.linalg.norm(edges, axis=1).mean())

    def to_dict(self) -> dict:
        data = {
            "corners_px": np.round(self.corners, 2).tolist(),
            "centre_px": [round(v, 2) for v in self.centre],
            "angle_deg": round(self.angle_deg, 3),
            "side_px": round(self.side_px, 2),
            "orientation": self.orientation,
            "quality": self.quality.to_dict(),
        }
        if self.glyph is not None:
            data["glyph"] = {k: (round(v, 4) if isinstance(v, float) else v)
                             for k, v in self.glyph.__dict__.items()}
        return data


@dataclass
class Rejection:
    reason: str  # a key of REASONS
    detail: str
    corners: np.ndarray | None = None  # approximate outline in image px, when known

    @property
    def centre(self) -> tuple[float, float] | None:
        if self.corners is None:
            return None
        x, y = np.asarray(self.corners).mean(axis=0)
        return float(x), float(y)

    def to_dict(self) -> dict:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "corners_px": None if self.corners is None else np.round(self.corners, 1).tolist(),
        }


@dataclass
class SegmentationResult:
    method: str
    image_size: tuple[int, int]  # width, height
    expected_label_px: float
    labels: list[FoundLabel] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the whole image (blank, too small)
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "image_size": list(self.image_size),
            "expected_label_px": self.expected_label_px,
            "labels": [label.to_dict() for label in self.labels],
            "rejections": [r.to_dict() for r in self.rejections],
            "notes": list(self.notes),
            "elapsed_ms": round(self.elapsed_ms, 3),
        }


def segment(image: np.ndarray, expected_label_px: float, method: str = "fast", k: int = 12,
            crop_size: int = CROP_SIZE, *, border_frac: float = 0.05, size_tolerance: float = 0.15,
            rotation_deg: float | None = 0.0,
            templates: PatternTemplates | None = None) -> SegmentationResult:
    """Find up to `k` labels of about `expected_label_px` (outer side) in a photo.

    `image` may be 8- or 16-bit or float, gray, BGR or BGRA. `border_frac` is the border
    width over the label side; `size_tolerance` the accepted relative size error.
    `rotation_deg` is the labels' expected angle in the image (degrees clockwise on
    screen, within 45), or None when it is arbitrary; then `templates`, if given, decide
    the orientation from the glyph. With templates every label's glyph is also classified.
    Raises PufError for input that is not an image; an image without labels gives an
    empty result with a note.
    """
    start = perf_counter()
    if method not in METHODS:
        raise PufError(f"unknown segmentation method {method!r}; choose from {', '.join(METHODS)}")
    if not (math.isfinite(expected_label_px) and expected_label_px >= 8):
        raise PufError(f"expected label size {expected_label_px!r} px must be a number >= 8")
    if not (isinstance(k, int) and k >= 1):
        raise PufError(f"k must be a whole number >= 1, got {k!r}")
    if not (isinstance(crop_size, int) and 16 <= crop_size <= 4096):
        raise PufError(f"crop size must be a whole number of 16-4096 px, got {crop_size!r}")
    if not 0 < border_frac < 0.25:
        raise PufError(f"border fraction {border_frac} must lie between 0 and 0.25")
    if not 0 < size_tolerance < 0.5:
        raise PufError(f"size tolerance {size_tolerance} must lie between 0 and 0.5")
    if rotation_deg is not None and not math.isfinite(rotation_deg):
        raise PufError(f"rotation {rotation_deg!r} is not a number")
    image = as_uint8(image)
    height, width = image.shape[:2]
    result = SegmentationResult(method, (width, height), float(expected_label_px))
    if min(width, height) < expected_label_px * (1 - size_tolerance):
        result.notes.append(f"the image ({width}x{height}) is smaller than one label "
                            f"({expected_label_px:.0f} px)")
    else:
        params = _Params(float(expected_label_px), k, crop_size, border_frac, size_tolerance,
                         rotation_deg, templates)
        (_fast if method == "fast" else _paper)(image, params, result)
    result.elapsed_ms = (perf_counter() - start) * 1000
    return result


def as_uint8(image: np.ndarray) -> np.ndarray:
    """The image as contiguous 8-bit gray (H, W) or BGR (H, W, 3); PufError if it is not one.

    16-bit images are shifted down by as many bits as their brightest pixel needs (a
    12-bit camera keeps all its range); float images are taken as 0-1 if they stay
    within 1, else 0-255."""
    if not isinstance(image, np.ndarray):
        raise PufError(f"expected an image array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise PufError(f"an image must be (H, W) gray or (H, W, 3/4) colour, "
                       f"got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise PufError(f"the image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype == np.uint8:
        pass
    elif image.dtype == np.uint16:
        bits = int(image.max()).bit_length()
        image = (image >> max(0, bits - 8)).astype(np.uint8)
    elif image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise PufError("the image has pixels that are not numbers (NaN or infinite)")
        top = 255.0 if float(image.max(initial=0.0)) <= 1.0 else 1.0
        image = (np.clip(image, 0.0, 255.0 / top) * top).round().astype(np.uint8)  # clipped first: no overflow
    else:
        raise PufError(f"unsupported pixel type {image.dtype} (use 8- or 16-bit or float)")
    return np.ascontiguousarray(image)


def crop_label(image: np.ndarray, corners: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """The crop segmentation would cut for a label with these outer corners (TL, TR, BR,
    BL, image px): from the image reduced 2x (by 2x2 means) when the label is at least
    twice the crop's size, so the texture is not aliased, else from the image itself.
    For crops made from known corners (simulated truth) that must match real ones."""
    image = as_uint8(image)
    corners = np.asarray(corners, np.float64).reshape(4, 2)
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    if sides.mean() / 2 < crop_size * 0.95:
        return _crops(image, 1, corners[None], crop_size)[0]
    # reduce only the label's surroundings, on the same 2x2 grid as the whole image
    x0, y0 = (np.maximum(np.floor(corners.min(axis=0)).astype(int) - 8, 0) // 2) * 2
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 8, image.shape[1::-1]) // 2 * 2
    part = image[y0:y1, x0:x1]
    half = cv2.resize(part, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA)
    return _crops(half, 2, (corners - (x0, y0))[None], crop_size)[0]


def load_image(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as it is stored (8/16-bit, gray/BGR/BGRA); CaptureUnusable if it cannot,
    or if it has more than `max_pixels` pixels (None: the device's limit,
    `edge_app.photo_size.max_pixels`), refused from its header before it is decoded."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CaptureUnusable(f"cannot read {path}: {error.strerror or error}") from None
    if not data:
        raise CaptureUnusable(f"{path} is an empty file")
    check_photo_size(data, path, max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise CaptureUnusable(f"{path} could not be decoded: {error.err or error}") from None
    if image is None or image.size == 0:
        raise CaptureUnusable(f"{path} is not an image OpenCV can read, or it is truncated")
    return image


# ---- shared steps -----------------------------------------------------------------

@dataclass(frozen=True)
class _Params:
    label_px: float
    k: int
    crop_size: int
    border_frac: float
    tolerance: float
    rotation_deg: float | None
    templates: PatternTemplates | None


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def _halve(image: np.ndarray) -> np.ndarray:
    """2x2 means: OpenCV's fast path (a 4x INTER_AREA reduction is several times slower
    than two of these)."""
    return cv2.resize(image, (max(1, image.shape[1] // 2), max(1, image.shape[0] // 2)),
                      interpolation=cv2.INTER_AREA)


def _order_corners(quads: np.ndarray, rotation_deg: float | None) -> np.ndarray:
    """(n, 4, 2) quadrilaterals clockwise on screen, each starting at the corner that is
    top-left for the expected rotation."""
    rel = quads - quads.sum(axis=1, keepdims=True) / 4
    angles = np.arctan2(rel[..., 1], rel[..., 0])
    order = np.argsort(angles, axis=1)
    rows = np.arange(len(quads))[:, None]
    angle = angles[rows, order] - math.radians(rotation_deg or 0.0) + 0.75 * math.pi  # 0 at top-left
    first = np.argmin(np.abs(np.angle(np.exp(1j * angle))), axis=1)
    return quads[rows, order[rows, (first[:, None] + _FOUR) % 4]]


def _shape(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Side lengths (n, 4) and the largest corner-angle deviation from 90 degrees (n,)
    of (n, 4, 2) quadrilaterals."""
    edges = quads[:, [1, 2, 3, 0]] - quads
    sides = np.sqrt((edges**2).sum(axis=2))
    prev = edges[:, [3, 0, 1, 2]]
    cos = -(edges * prev).sum(axis=2) / np.maximum(sides * sides[:, [3, 0, 1, 2]], 1e-9)
    skew = np.degrees(np.abs(np.arccos(np.minimum(np.maximum(cos, -1), 1)) - math.pi / 2)).max(axis=1)
    return sides, skew


_UNIT_SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)


@cache
def _crop_grid(size: int) -> np.ndarray:
    """(3, size * size) homogeneous coordinates of a crop's pixels."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([u.ravel(), v.ravel(), np.ones(size * size, np.float32)])


def _crops(source: np.ndarray, scale: float, corners: np.ndarray, size: int) -> np.ndarray:
    """Warp the quadrilaterals `corners` (n, 4, 2, full-image px) of `source` (reduced by
    `scale`) to (n, size, size[, 3]) squares; the corners land on the crops' outer pixel
    edges. One remap for all of them: much cheaper than a warp each."""
    square = (_UNIT_SQUARE * size - 0.5).astype(np.float32)
    to_source = np.stack([cv2.getPerspectiveTransform(square, ((c + 0.5) / scale - 0.5).astype(np.float32))
                          for c in corners]).astype(np.float32)
    # OpenBLAS's aarch64 sgemm leaves stale floating-point flags, so numpy reports divide by zero,
    # overflow and invalid value "in matmul" for these finite transforms (entries ~1e2, w >= 0.9 on
    # the committed arm64 photos; numpy issues 28687, 29820). Only the BLAS call is hushed: the
    # division below still warns if a transform is ever degenerate.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        points = to_source @ _crop_grid(size)  # (n, 3, size * size)
    map_x = (points[:, 0] / points[:, 2]).reshape(-1, size)
    map_y = (points[:, 1] / points[:, 2]).reshape(-1, size)
    fixed, fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    crops = cv2.remap(source, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crops.reshape(len(corners), size, size, *source.shape[2:])


_STATS_SIZE = 32  # crops are reduced to this for their border, film and level figures


@cache
def _crop_weights(border_frac: float) -> np.ndarray:
    """(32 * 32, 3) weights averaging a reduced crop's border band, the film band just
    inside it, and its whole interior (each column sums to 1)."""
    size = _STATS_SIZE
    b = border_frac * size
    yy, xx = np.mgrid[0:size, 0:size]
    inset = np.minimum(np.minimum(xx, yy), np.minimum(size - 1 - xx, size - 1 - yy)) + 0.5
    border = (inset > 0.15 * b) & (inset < 0.85 * b)
    film = (inset > 1.4 * b) & (inset < 1.4 * b + 0.1 * size)
    masks = np.stack([border, film, inset > 1.4 * b], axis=-1).reshape(-1, 3).astype(np.float32)
    return masks / masks.sum(axis=0)


def _qualities(crops: np.ndarray, gray: np.ndarray, sides: np.ndarray, skew: np.ndarray, sharpness: np.ndarray,
               params: _Params, edge_rms: np.ndarray | None) -> list[Quality]:
    """Quality records of (n, S, S[, 3]) crops (`gray`: the same in gray, (n * S, S)), computed on
    them all at once."""
    n, size = crops.shape[:2]
    weights = _crop_weights(params.border_frac)

    def reduced(stack: np.ndarray) -> np.ndarray:  # (n * S, S) to (n, 32 * 32)
        factor = size // _STATS_SIZE
        while factor > 1 and stack.shape[1] % 2 == 0:
            stack, factor = _halve(stack), factor // 2
        if stack.shape[1] != _STATS_SIZE:
            stack = cv2.resize(stack, (_STATS_SIZE, n * _STATS_SIZE), interpolation=cv2.INTER_AREA)
        return stack.reshape(n, -1).astype(np.float32)

    border, film, level = (reduced(gray) @ weights).T
    _, saturated = cv2.threshold(crops.reshape(n, -1), 254, 255, cv2.THRESH_BINARY)
    clipped = [cv2.countNonZero(row) / saturated.shape[1] for row in saturated]
    contrast = np.where(film > 0, 1.0 - border / np.maximum(film, 1e-6), 0.0)
    figures = zip(sharpness.tolist(), film.tolist(), clipped,
                  contrast.tolist(), skew.tolist(), (sides.max(axis=1) / np.maximum(
                      sides.min(axis=1), 1e-9)).tolist(), (sides.sum(axis=1) / 4 / params.label_px).tolist(),
                  [None] * n if edge_rms is None else edge_rms.tolist(), strict=True)
    return [Quality(*row) for row in figures]


def side_sharpness(source: np.ndarray, scale: float, corners: np.ndarray, border_frac: float) -> np.ndarray:
    """Sharpness (n, 4) of each side of (n, 4, 2) labels (full-image px, clockwise) in
    `source` (the image reduced by `scale`): the border width over its outer edge's rise
    distance (step height over steepest slope, which for a blurred step is about its 10-90%
    rise); 0 where the side shows no step. A label's `Quality.sharpness` is its worst
    side's (a hand's movement smears one direction). Each side's profile is the median of
    `_PROFILES` profiles across it (dust and grains drop out), so a coarse or smooth film
    measures as sharp as the default."""
    n = len(corners)
    quads = ((corners + 0.5) / scale - 0.5).astype(np.float32)
    edges = quads[:, [1, 2, 3, 0]] - quads
    length = np.maximum(np.sqrt((edges**2).sum(axis=2, keepdims=True)), 1e-6)
    normal = (edges / length)[..., ::-1] * _OUTWARD  # outward for clockwise corners
    width = border_frac * (length.sum(axis=1, keepdims=True) / 4)  # (n, 1, 1) border width, source px
    offsets = _EDGE_OFFSETS * width  # (n, 1, D)
    # x and y apart: numpy's loops over a last axis of 2 cost more than the arithmetic
    x, y = (((quads[:, :, None, axis] + edges[:, :, None, axis] * _PROFILE_T)[..., None]  # (n, 4, P, 1)
             + (offsets * normal[:, :, None, axis])[:, :, None]).reshape(-1, len(_EDGE_OFFSETS))  # (n * 4 * P, D)
            for axis in (0, 1))
    samples = cv2.remap(source, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if samples.ndim == 3:
        samples = samples.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
    # each side's profile: the median of its _PROFILES profiles (np.median's figures, fewer steps)
    ranked = np.sort(samples.reshape(n, 4, _PROFILES, -1), axis=2)
    profile = ((ranked[:, :, _PROFILES // 2 - 1] + ranked[:, :, _PROFILES // 2]) / 2).astype(np.float32)  # (n, 4, D)
    dark = profile[..., _BORDER].min(axis=-1)
    film = profile[..., _FILM].sum(axis=-1) / _FILM_COUNT
    # the steepest rise, per border width; a step of height H blurred by a Gaussian of sigma s
    # rises H / (2.5 s) at most, by a hand's movement over L, H / L
    spacing = float(_EDGE_OFFSETS[1] - _EDGE_OFFSETS[0])
    slope = (profile[..., 2:] - profile[..., :-2]).max(axis=-1) / (2 * spacing)
    rise = np.maximum(film - dark, 1.0) / np.maximum(slope, 1e-3)  # in border widths
    return np.where(film - dark > 2.0, 1.0 / rise, 0.0)


def _finish(source: np.ndarray, scale: float, corners: np.ndarray, params: _Params,
            edge_rms: np.ndarray | None = None) -> list[FoundLabel]:
    """Crop, rate and orient (n, 4, 2) labels, ordered TL, TR, BR, BL for the rotation."""
    if not len(corners):
        return []
    corners = _order_corners(corners, params.rotation_deg)
    sides, skew = _shape(corners)
    crops = _crops(source, scale, corners, params.crop_size)
    n, size = crops.shape[:2]
    gray = _gray(crops.reshape(n * size, size, -1) if crops.ndim == 4 else crops.reshape(n * size, size))
    labels = []
    sharpness = side_sharpness(source, scale, corners, params.border_frac).min(axis=1)
    qualities = _qualities(crops, gray, sides, skew, sharpness, params, edge_rms)
    for crop, gray_crop, corner, quality in zip(crops, gray.reshape(n, size, size), corners, qualities, strict=True):
        glyph = classify_glyph(gray_crop, params.templates) if params.templates is not None else None
        if params.rotation_deg is not None:
            orientation = "prior"
        elif glyph is None:
            orientation = "unknown"
        else:
            crop, corner = canonical(crop, corner, glyph.quarter_turns)
            orientation = "glyph" if glyph.orientation_margin >= ORIENTATION_MARGIN else "ambiguous"
        labels.append(FoundLabel(corner, crop, quality, orientation, glyph))
    return labels


# ---- the paper's method -----------------------------------------------------------

def _paper(image: np.ndarray, params: _Params, result: SegmentationResult) -> None:
    gray = _gray(image)
    grad_x = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    grad_y = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    gradient = cv2.convertScaleAbs(cv2.subtract(grad_x, grad_y))
    blurred = cv2.blur(gradient, (9, 9))
    _, binary = cv2.threshold(blurred, 90, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = sorted(contours, key=cv2.contourArea, reverse=True)[:params.k]
    boxes = [cv2.boxPoints(cv2.minAreaRect(c)).astype(np.float64) for c in largest]
    boxes = [box for box in boxes if cv2.contourArea(box.astype(np.float32)) >= 1.0]
    if boxes:
        result.labels += _finish(image, 1.0, np.array(boxes), params)
    else:
        result.notes.append("no contours above the paper's threshold")


# ---- the fast method --------------------------------------------------------------

def _fast(image: np.ndarray, params: _Params, result: SegmentationResult) -> None:
    height, width = image.shape[:2]
    level = min(max(round(math.log2(params.label_px / _REDUCED_LABEL_PX)), 0), 3)
    # one 2x reduction in colour (crops and corner refinement use it while it keeps
    # enough detail), the rest in gray
    half = _halve(image) if level >= 1 else image
    fine_scale = 2 if level >= 1 else 1
    fine = _gray(half)
    small = fine
    for _ in range(level - 1):
        small = _halve(small)
    low, high = cv2.minMaxLoc(small)[:2]
    if high - low < 8:
        result.notes.append(f"the image is blank (levels {low:.0f}-{high:.0f})")
        return
    quads, rejections = _candidates(small, 2**level, params)
    result.rejections += rejections
    if not len(quads):
        return
    corners, edge_rms, usable = _refine(fine, quads, fine_scale, 2**level, params)
    verdicts = _verdicts(corners, usable, quads, width, height, params)
    result.rejections += [v for v in verdicts if v is not None]
    keep = np.array([v is None for v in verdicts])
    corners, edge_rms = corners[keep], edge_rms[keep]
    middle = np.array([(width - 1) / 2, (height - 1) / 2])
    order = np.argsort(np.linalg.norm(corners.sum(axis=1) / 4 - middle, axis=1))
    for i in order[params.k:]:
        result.rejections.append(Rejection("excess", f"beyond the {params.k} labels nearest "
                                           "the image centre", corners[i]))
    order = order[:params.k]
    if params.label_px / 2 < params.crop_size * 0.95:
        half, fine_scale = image, 1  # the reduced image would blur the crops
    for label in _finish(half, fine_scale, corners[order], params, edge_rms[order]):
        if label.quality.border_contrast < _MIN_BORDER_CONTRAST:
            result.rejections.append(Rejection(
                "border", f"border contrast {label.quality.border_contrast:.2f} "
                f"< {_MIN_BORDER_CONTRAST}", label.corners))
        else:
            result.labels.append(label)


def _candidates(small: np.ndarray, scale: int, params: _Params
                ) -> tuple[np.ndarray, list[Rejection]]:
    """Quadrilaterals (n, 4, 2 in full-image px, clockwise) of every closed ring of label
    size, or of the film inside one (when neighbouring rings have merged), found on the
    reduced image; one per label. Rings open at the image edge come back as rejections."""
    label = params.label_px / scale
    inner = label * (1 - 2 * params.border_frac)
    # the neighbourhood's mean over half a label, taken 4x coarser (it varies slowly)
    height, width = small.shape
    coarse = _halve(_halve(small))
    window = int(label * 0.5 / 4) | 1
    mean = cv2.resize(cv2.blur(coarse, (window, window)), (width, height), interpolation=cv2.INTER_LINEAR)
    threshold = cv2.convertScaleAbs(mean, alpha=_DARK_RATIO)
    # a 3x3 mean first: borders (4 px wide here) stay dark, grain speckles do not
    dark = cv2.compare(cv2.blur(small, (3, 3)), threshold, cv2.CMP_LT)
    contours, hierarchy = cv2.findContours(dark, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    tol = params.tolerance
    outlines: list[np.ndarray] = []  # a quadrilateral (4, 2) per ring or film, at `sizes`
    sizes: list[float] = []
    clean: set[int] = set()  # rings whose own outline is a good square: their film is not needed
    cut: list[np.ndarray] = []  # the outlines of rings open at the image edge
    parents = hierarchy[0, :, 3].tolist() if hierarchy is not None else []
    for index, contour in enumerate(contours):
        x, y, w, h = cv2.boundingRect(contour)
        if max(w, h) < 0.3 * label:
            continue  # texture, dust and glyph strokes: the great majority
        parent = parents[index]
        is_hole = parent >= 0
        if parent in clean:
            continue
        size = inner if is_hole else label
        if not is_hole and (x <= 0 or y <= 0 or x + w >= width or y + h >= height):
            if max(w, h) <= 1.5 * label:
                cut.append(cv2.boxPoints(cv2.minAreaRect(contour)))
            continue
        if min(w, h) < size * (1 - tol) - 2 or max(w, h) > 1.45 * (size * (1 + tol) + 2):
            continue
        approx = cv2.approxPolyDP(contour, 0.12 * size, True)
        if len(approx) == 4 and cv2.isContourConvex(approx):
            outlines.append(approx.reshape(4, 2))
            if not is_hole and _is_clean_square(outlines[-1].tolist()):
                clean.add(index)
        else:
            outlines.append(cv2.boxPoints(cv2.minAreaRect(contour)))
        sizes.append(size)
    rejections = [Rejection("edge", "a ring open at the image edge", box)
                  for box in (np.array(cut) + 0.5) * scale - 0.5] if cut else []
    if not outlines:
        return np.zeros((0, 4, 2)), rejections
    quads = _order_corners(np.array(outlines, np.float64), 0.0)
    expected = np.array(sizes)
    sides, skew = _shape(quads)
    ok = ((sides.min(axis=1) >= expected * (1 - tol) - 2) & (sides.max(axis=1) <= expected * (1 + tol) + 2)
          & (skew <= _MAX_SKEW_DEG + 8))
    if not ok.all():
        quads, expected, sides, skew = quads[ok], expected[ok], sides[ok], skew[ok]
    # the film inside a ring: grow it to the ring's outer edge
    centres = quads.sum(axis=1) / 4
    quads = centres[:, None] + (quads - centres[:, None]) * (label / expected)[:, None, None]
    if len(quads) > 1:  # (a handheld photo's one clean ring is alone)
        # one quadrilateral per label: a ring and the film it encloses give two; keep the
        # squarer (a speck of dust on the ring bends one of them)
        gaps = centres[:, None] - centres[None]
        near = (gaps**2).sum(axis=2) < (0.3 * label) ** 2
        badness = skew + 90 / math.pi * (sides.max(axis=1) - sides.min(axis=1)) / (sides.sum(axis=1) / 4)
        rank = np.argsort(np.argsort(badness, kind="stable"))
        quads = quads[~(near & (rank[None, :] < rank[:, None])).any(axis=1)]
    return (quads + 0.5) * scale - 0.5, rejections


def _is_clean_square(quad: Sequence[Sequence[float]]) -> bool:
    """Sides and diagonals each equal within 3 %: no dust has bent this outline."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = quad
    sides = (math.hypot(bx - ax, by - ay), math.hypot(cx - bx, cy - by),
             math.hypot(dx - cx, dy - cy), math.hypot(ax - dx, ay - dy))
    diagonals = (math.hypot(cx - ax, cy - ay), math.hypot(dx - bx, dy - by))
    return max(sides) < 1.03 * min(sides) and max(diagonals) < 1.03 * min(diagonals)


def _refine(fine: np.ndarray, quads: np.ndarray, scale: int, coarse_scale: int, params: _Params
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refine each quadrilateral's sides to the border's outer edge on `fine`, a gray image
    reduced by `scale` (1 or 2) from the full one.

    Along each side, short profiles cross the border (each the mean of three parallel
    ones); the outer edge is where a profile rises most steeply from the dark border to
    the film outside, located to a fraction of a pixel, and a side's edge points are
    fitted with a line three times, each time without the points far from the last line
    (by their median distance: dust on the border moves a few points, not the line).
    Returns the corners (n, 4, 2, full-image px), the rms distance of the edge points from
    their lines (full-image px), and whether every side had enough points, spread over at
    least half of it."""
    height, width = fine.shape
    n = len(quads)
    starts = ((quads + 0.5) / scale - 0.5).astype(np.float32)
    reach = int(1.5 * coarse_scale / scale + 4)  # the coarse corners are good to a pixel there
    offsets, nearness = _profile_offsets(reach)
    depth = len(offsets)
    edges = starts[:, [1, 2, 3, 0]] - starts
    along = edges / np.maximum(np.sqrt((edges**2).sum(axis=2, keepdims=True)), 1e-6)
    normal = along[..., ::-1] * _OUTWARD  # outward for clockwise corners
    t = _PROFILE_T
    base = starts[:, :, None, :] + edges[:, :, None, :] * t[:, None]  # (n, 4, P, 2)
    # three parallel profiles a pixel apart, D samples each: maps of (n * 4 * P, 3 * D)
    maps = []
    for axis in (0, 1):
        step = (_BESIDE * along[:, :, None, None, axis]
                + offsets * normal[:, :, None, None, axis]).reshape(n, 4, 1, 3 * depth)
        maps.append((base[..., axis, None] + step).reshape(-1, 3 * depth))
    samples = cv2.remap(fine, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    profile = samples.reshape(n, 4, _PROFILES, 3, depth).sum(axis=3, dtype=np.float32)
    rise = profile[..., 2:] - profile[..., :-2]
    (x_low, x_high, _, _), (y_low, y_high, _, _) = cv2.minMaxLoc(maps[0]), cv2.minMaxLoc(maps[1])
    near_edge = min(x_low, y_low) < 0 or x_high > width - 1 or y_high > height - 1
    if near_edge:  # some profiles run off the image: their samples there do not count
        mx = maps[0].reshape(n, 4, _PROFILES, 3 * depth)[..., depth:2 * depth]
        my = maps[1].reshape(n, 4, _PROFILES, 3 * depth)[..., depth:2 * depth]
        inside = (mx >= 0) & (mx <= width - 1) & (my >= 0) & (my <= height - 1)
        rise[~(inside[..., 2:] & inside[..., :-2])] = -1e6
    # a neighbour's inner edge may be in reach too: prefer the edge nearest the estimate
    peak = np.argmax(rise * nearness, axis=-1)
    # the peak's rise and its neighbours' (n, 4, P, 1) each, in one gather
    flat = rise.reshape(-1, depth - 2)
    around = np.minimum(np.maximum(peak.reshape(-1, 1) + _AROUND, 0), depth - 3)
    left, strength, right = flat[np.arange(len(flat))[:, None], around].T.reshape(3, n, 4, _PROFILES, 1)
    valid = (strength > 0.3 * np.maximum(profile.sum(axis=-1, keepdims=True) / depth, 3.0))[..., 0]
    if near_edge:  # a profile must see film beyond the expected edge: where the image
        valid &= inside[..., reach + 3]  # ends first, its steepest rise is not the border's
    # sub-pixel peak from a parabola through the neighbours
    curve = left - 2 * strength + right
    fit = (curve < 0) & (left > -1e6) & (right > -1e6)
    delta = np.minimum(np.maximum(np.where(fit, 0.5 * (left - right) / np.where(fit, curve, -1), 0), -0.5), 0.5)
    edge = offsets[1:-1][peak] + delta[..., 0]
    edge_points = base + edge[..., None] * normal[:, :, None, :]
    weights = valid.astype(np.float32)
    middle = (np.maximum(valid.sum(axis=-1) - 1, 0) // 2).ravel()  # each side's median point, when sorted
    sides = np.arange(4 * n)
    for fit in range(_FITS):
        centre, direction, residual = _fit_lines(edge_points, weights, along)
        if fit == _FITS - 1:
            break
        # drop points far from the line, by the median distance of all (the heading turns a
        # line's residuals' signs, never their sizes)
        distance = np.abs(residual)
        median = np.sort(np.where(valid, distance, np.inf), axis=-1).reshape(-1, _PROFILES)[sides, middle]
        kept = (valid & (distance <= np.maximum(0.6, 4.5 * median).reshape(n, 4, 1))).astype(np.float32)
        if np.array_equal(kept, weights):
            break  # the same points again: every later fit would be this one
        weights = kept
    counts = weights.sum(axis=-1)
    span = np.where(weights > 0, t, -1.0).max(axis=-1) + np.where(weights > 0, -t, -1.0).max(axis=-1)
    good = (counts >= max(4, _PROFILES // 3)) & (span >= 0.5)
    rms = np.sqrt((weights * residual**2).sum(axis=(1, 2)) / np.maximum(counts.sum(axis=1), 1))
    corners, crossing = _corners(centre, direction)
    # a side whose film lies beyond the image edge cannot be measured: when the other
    # three are good, the label is a square, so its fourth side is the opposite one
    # moved across by the side's length
    for k in np.flatnonzero((~good).sum(axis=1) == 1) if near_edge else ():
        side = int(np.argmin(good[k]))
        if inside[k, side, :, -1].mean() >= 0.5:
            continue  # the side's film is in the image: its border is just not there
        opposite = (side + 2) % 4
        length = np.linalg.norm(corners[k, (opposite + 1) % 4] - corners[k, opposite])
        d = direction[k, opposite]
        centre[k, side] = centre[k, opposite] - length * np.array([d[1], -d[0]])
        direction[k, side] = -d
        good[k, side] = True
        corners[k], crossing[k] = (c[0] for c in _corners(centre[k:k + 1], direction[k:k + 1]))
    usable = good.all(axis=1) & crossing
    return (corners + 0.5) * scale - 0.5, rms * scale, usable


@cache
def _profile_offsets(reach: int) -> tuple[np.ndarray, np.ndarray]:
    """A refined side's profile offsets, -reach to reach px (outward positive), and the
    weights of a rise at each inner offset: 1 at the estimate, 0.6 at the reach's end (the
    edge nearest the estimate wins over a neighbour's). Read-only: every call shares them."""
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    nearness = 1.0 - 0.4 * (offsets[1:-1] / reach) ** 2
    offsets.flags.writeable = nearness.flags.writeable = False
    return offsets, nearness


def _corners(centre: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corner i of (n, 4) lines, where side i-1 meets side i, and whether all four lines
    cross at a clear angle."""
    prev_c, prev_d = centre[:, [3, 0, 1, 2]], direction[:, [3, 0, 1, 2]]
    det = prev_d[..., 0] * -direction[..., 1] + direction[..., 0] * prev_d[..., 1]
    clear = np.abs(det) > 0.5
    gap = centre - prev_c
    a = (gap[..., 0] * -direction[..., 1] + direction[..., 0] * gap[..., 1]) / np.where(clear, det, 1.0)
    return prev_c + a[..., None] * prev_d, clear.all(axis=1)


def _fit_lines(points: np.ndarray, weights: np.ndarray, heading: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted total-least-squares lines through (..., P, 2) points: a point on each,
    its direction (in the sense of `heading`, if given), and every point's signed
    distance from it."""
    total = np.maximum(weights.sum(axis=-1, keepdims=True), 1e-9)
    centre = (points * weights[..., None]).sum(axis=-2) / total
    d = points - centre[..., None, :]
    sxx = (weights * d[..., 0] ** 2).sum(axis=-1)
    syy = (weights * d[..., 1] ** 2).sum(axis=-1)
    sxy = (weights * d[..., 0] * d[..., 1]).sum(axis=-1)
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    cos, sin = np.cos(theta), np.sin(theta)
    if heading is not None:
        back = cos * heading[..., 0] + sin * heading[..., 1] < 0
        cos, sin = np.where(back, -cos, cos), np.where(back, -sin, sin)
    residual = d[..., 1] * cos[..., None] - d[..., 0] * sin[..., None]
    return centre, np.stack([cos, sin], axis=-1), residual


def _verdicts(corners: np.ndarray, usable: np.ndarray, coarse: np.ndarray, width: int,
              height: int, params: _Params) -> list[Rejection | None]:
    """Why each refined candidate is not a label, or None when it is one."""
    outlines = np.where(usable[:, None, None], corners, coarse)
    low, high = outlines.min(axis=1), outlines.max(axis=1)
    inset = np.minimum(np.minimum(low[:, 0], low[:, 1]),
                       np.minimum(width - 1 - high[:, 0], height - 1 - high[:, 1]))
    sides, skew = _shape(corners)
    mean_side, shortest, longest = ((sides.sum(axis=1) / 4).tolist(), sides.min(axis=1).tolist(),
                                    sides.max(axis=1).tolist())
    inset, skew, usable = inset.tolist(), skew.tolist(), usable.tolist()
    tol = params.tolerance
    verdicts: list[Rejection | None] = []
    for i, outline in enumerate(outlines):
        if inset[i] < -0.5:
            verdicts.append(Rejection("edge", "the label reaches beyond the image", outline))
        elif not usable[i] and inset[i] < 4 * params.label_px * params.border_frac:
            verdicts.append(Rejection("edge", "a side's border is not in the image", outline))
        elif not usable[i]:
            verdicts.append(Rejection("border", "a side has too few border edge points", outline))
        elif not (1 - tol) * params.label_px <= mean_side[i] <= (1 + tol) * params.label_px:
            verdicts.append(Rejection("size", f"side {mean_side[i]:.0f} px, expected "
                                      f"{params.label_px:.0f} +- {tol:.0%}", outline))
        elif skew[i] > _MAX_SKEW_DEG or longest[i] > (1 + tol) * shortest[i]:
            verdicts.append(Rejection("shape", f"corner angles off by up to {skew[i]:.1f} deg, "
                                      f"sides {shortest[i]:.0f}-{longest[i]:.0f} px", outline))
        else:
            verdicts.append(None)
    return verdicts
