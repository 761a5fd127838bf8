"""The one preprocessing step between a label crop and the fingerprint network.

The trainer imports this module to build its training inputs and the device imports it
to build its queries, so the two can never disagree; its parameters travel in the model
bundle's manifest (:meth:`Preprocess.to_dict`). Only numpy and OpenCV: no TensorFlow.

A crop is what segmentation produces: a square BGR uint8 image of the label's outer
square, brought to canonical orientation (any side; it is resized to `input_size`). The
model input is one channel (the green channel carries the CsPbBr3 emission; blue and red
see a fraction of it and mostly add noise and white-balance drift), standardised per
image (so exposure, gain and gamma shifts largely cancel), with the etched border ring
that every label shares set to zero: it carries no identity (SIFT's false matches came
from it), and a network left to see it learns to use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from edge_app.errors import PufError

CHANNELS = ("green", "gray")
CLIP = 5.0  # standardised values are clipped to +-CLIP
MIN_CROP_PX = 8  # a crop with a shorter side holds no texture to tell labels apart by


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 112  # model input side in pixels
    channel: str = "green"  # "green" (BGR channel 1) or "gray"
    # the outer ring of this fraction of the side is zeroed (the shared etched border:
    # 10 um of 200 plus the line's spread and segmentation error)
    border_mask_frac: float = 0.08
    normalise: str = "standardise"  # per image: (x - mean) / std over the unmasked area

    def __post_init__(self) -> None:
        if not (isinstance(self.input_size, int) and 16 <= self.input_size <= 512):
            raise PufError(f"input size must be a whole number of pixels in 16-512, "
                           f"got {self.input_size!r}")
        if self.channel not in CHANNELS:
            raise PufError(f"channel must be one of {CHANNELS}, got {self.channel!r}")
        if not (isinstance(self.border_mask_frac, int | float) and 0.0 <= self.border_mask_frac < 0.4):
            raise PufError(f"border mask must be a fraction in 0-0.4 of the side, "
                           f"got {self.border_mask_frac}")
        if self.normalise != "standardise":
            raise PufError(f"unknown normalisation {self.normalise!r} (known: standardise)")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model's input shape for one crop (height, width, channels)."""
        return (self.input_size, self.input_size, 1)

    def mask(self) -> np.ndarray:
        """(size, size) float32: 1 where texture is kept, 0 on the shared border ring."""
        return _mask(self.input_size, self.border_mask_frac)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Preprocess:
        if not isinstance(data, dict):
            raise PufError(f"the preprocessing parameters must be an object, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise PufError(f"unknown preprocessing parameters: {sorted(unknown)}")
        return cls(**data)


_MASKS: dict[tuple[int, float], np.ndarray] = {}


def _edge(size: int, frac: float) -> int:
    """The masked ring's width in px."""
    return int(round(size * frac))


def _mask(size: int, frac: float) -> np.ndarray:
    key = (size, frac)
    if key not in _MASKS:
        mask = np.zeros((size, size), np.float32)
        edge = _edge(size, frac)
        mask[edge:size - edge, edge:size - edge] = 1.0
        _MASKS[key] = mask
    return _MASKS[key]


def preprocess(crop: np.ndarray, params: Preprocess = Preprocess()) -> np.ndarray:
    """One crop (H, W, 3) BGR uint8 (or (H, W) single channel) -> (size, size, 1) float32."""
    crop = np.asarray(crop)
    if crop.dtype != np.uint8 or crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] != 3):
        raise PufError(f"a label crop must be an 8-bit BGR or single-channel image, "
                       f"got {crop.dtype} of shape {crop.shape}")
    if crop.shape[0] < MIN_CROP_PX or crop.shape[1] < MIN_CROP_PX:
        raise PufError(f"a label crop of {crop.shape[1]}x{crop.shape[0]} pixels is too small")
    if crop.ndim == 3:
        if params.channel == "green":
            plane = cv2.extractChannel(crop, 1)  # contiguous: what cv2.resize copies a slice to
        else:
            plane = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    else:
        plane = crop
    size = params.input_size
    if plane.shape != (size, size):
        shrink = plane.shape[0] > size or plane.shape[1] > size
        plane = cv2.resize(plane, (size, size),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = plane.astype(np.float32)
    # the unmasked square, in the order a boolean mask would take it (the same sums, bit
    # for bit), without the boolean mask's gather
    edge = _edge(size, params.border_mask_frac)
    kept = np.ascontiguousarray(x[edge:size - edge, edge:size - edge]).ravel()
    mean = float(kept.mean())
    std = float(kept.std())
    # clipped so dust specks and saturated pixels do not set an int8 model's input range;
    # in place, each step the value np.clip((x - mean) * (1 / std), -CLIP, CLIP) * mask gives
    np.subtract(x, mean, out=x)
    np.multiply(x, 1.0 / max(std, 1.0), out=x)
    np.maximum(x, -CLIP, out=x)
    np.minimum(x, CLIP, out=x)
    np.multiply(x, params.mask(), out=x)
    return x[:, :, None]


def preprocess_batch(crops, params: Preprocess = Preprocess()) -> np.ndarray:
    """Many crops -> (N, size, size, 1) float32."""
    return np.stack([preprocess(c, params) for c in crops]) if len(crops) else np.zeros(
        (0, *params.input_shape), np.float32)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Float model input -> an integer model's input (TFLite affine quantisation)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)
