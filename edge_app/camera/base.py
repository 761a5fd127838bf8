"""One interface for every camera: a `FrameSource` gives a cheap downscaled preview for
the live view and full stills (`Frame`) for verification.

Backends, chosen by a spec string (`edge_app.camera.backends.open_camera`):

* ``file:PATH``: one photo, or a folder of photos taken in name order (tests, demos,
  checking photos taken elsewhere); `edge_app.camera.file_source`.
* ``opencv:N``, ``opencv:/dev/videoN``: a USB microscope or webcam; ``opencv:VIDEO`` replays
  a recorded video file through the same backend; `edge_app.camera.opencv_source`.
* ``picamera2`` (``picamera2:N`` for a second camera): the Pi's fluorescence camera module
  with its UV LEDs; `edge_app.camera.picamera_source`, the only module importing picamera2
  and gpiozero.

A live camera's still is delivered at the handheld geometry verify is tuned for (see
`still_size`); a file's photo is passed on as it is, as ``puf verify`` would read it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.errors import PufError
from edge_app.photo_size import STILL_LABEL_PX

SPECS = "file:PATH (a photo or a folder of photos), opencv:N, opencv:/dev/videoN, opencv:VIDEO_FILE or picamera2"
# The guide box's side over the frame's shorter side: a label filling it is
# STILL_LABEL_PX in the still, as in the 800x600 handheld photos verify is tested on.
GUIDE_FRACTION = 0.5
STILL_SHORT_PX = STILL_LABEL_PX / GUIDE_FRACTION  # a live camera's still's shorter side (smaller sensors: less)
MAX_EXPOSURE_US = 10_000_000


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # full still, BGR uint8 HxWx3 (what edge_app.verify expects)
    source: str  # where it came from: a file path, "opencv:0", "picamera2"
    exposure_us: int | None  # as captured, when the camera reports it
    gain: float | None
    timestamp: float  # time.time() at capture


class FrameSource(ABC):
    """A camera as the app sees it. Every failure is a PufError saying what to do."""

    _name: str  # set by a camera whose name does not change

    @property
    def name(self) -> str:
        """For people: "file: shots/ (2 of 5)", "USB camera 0", "Pi camera"."""
        return self._name

    @abstractmethod
    def preview_frame(self, max_width: int = 640) -> np.ndarray:
        """The current view, BGR uint8, at most `max_width` wide: cheap, for the live view."""

    @abstractmethod
    def capture(self) -> Frame:
        """One still for verification."""

    @abstractmethod
    def set_exposure(self, exposure_us: int | None, gain: float | None) -> None:
        """Manual exposure time (µs) and analogue gain; ``None`` for automatic exposure."""

    @abstractmethod
    def close(self) -> None:
        """Release the camera (safe to call twice)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_exposure(exposure_us: int | None, gain: float | None) -> tuple[int | None, float | None]:
    """Validated exposure settings: both None (automatic), or an exposure time in µs and
    a gain (1.0 when not given)."""
    if exposure_us is None:
        if gain is not None:
            raise PufError(f"a gain ({gain}) needs an exposure time too; give both, or neither for automatic exposure")
        return None, None
    if (isinstance(exposure_us, bool) or not isinstance(exposure_us, int | float) or not float(exposure_us).is_integer()
            or not 0 < exposure_us <= MAX_EXPOSURE_US):
        raise PufError(f"exposure time must be a whole number of 1-{MAX_EXPOSURE_US:,} µs, got {exposure_us!r}")
    if gain is None:
        gain = 1.0
    if isinstance(gain, bool) or not isinstance(gain, int | float) or not 0 < gain <= 64:
        raise PufError(f"analogue gain must lie between 0 and 64 (1.0 is no gain), got {gain!r}")
    return int(exposure_us), float(gain)


def downscale(image: np.ndarray, max_width: int) -> np.ndarray:
    """`image` at most `max_width` wide (area-averaged); as it is when already narrower."""
    if max_width < 16:
        raise PufError(f"preview width must be at least 16 px, got {max_width}")
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def still_size(width: int, height: int) -> tuple[int, int]:
    """The size a live camera's still is scaled to (never up): its shorter side such that a
    label filling the guide box is STILL_LABEL_PX. Even sides, as camera pipelines want them."""
    scale = min(1.0, STILL_SHORT_PX / min(width, height))
    return 2 * round(width * scale / 2), 2 * round(height * scale / 2)


def fit_still(image: np.ndarray) -> np.ndarray:
    """A live camera's frame at `still_size`."""
    height, width = image.shape[:2]
    size = still_size(width, height)
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def as_bgr(image: np.ndarray, source: str) -> np.ndarray:
    """A camera's array as BGR uint8 HxWx3 (grey and BGRA are converted)."""
    if image is None or image.size == 0:
        raise PufError(f"{source} gave an empty frame")
    if image.dtype != np.uint8:
        raise PufError(f"{source} gave {image.dtype} pixels; expected 8-bit images")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise PufError(f"{source} gave frames of shape {image.shape}; expected a colour or grey image")
