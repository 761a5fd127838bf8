"""A USB microscope or webcam through OpenCV (``opencv:0``, ``opencv:/dev/video2``), or a
recorded video replayed through the same backend (``opencv:/path/session.avi``).

A camera is asked for MJPG at 1920x1080 (the driver picks its nearest mode; MJPG keeps
the frame rate up over USB 2) with one buffered frame, so the preview is the current view.
Manual exposure goes through V4L2's controls (``CAP_PROP_AUTO_EXPOSURE`` 1 = manual,
3 = automatic; ``CAP_PROP_EXPOSURE`` in units of 100 µs); gain is left to the camera, as
its V4L2 units differ from one camera to the next. A camera that fails to open, gives no
picture, or stops giving pictures is a PufError, never a crash; one that stalls without
going away is given up on after `STALL_S` seconds (V4L2's own wait is 10 s, which would
freeze the live view that long).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from edge_app.camera.base import Frame, FrameSource, as_bgr, check_exposure, downscale, fit_still
from edge_app.errors import HardwareStopped, PufError

REQUESTED_SIZE = (1920, 1080)
_V4L2_MANUAL, _V4L2_AUTO = 1, 3  # V4L2_EXPOSURE_MANUAL, V4L2_EXPOSURE_APERTURE_PRIORITY
_V4L2_EXPOSURE_UNIT_US = 100
STALL_S = 2


_LOG_LEVEL_ERROR = 2  # cv::utils::logging::LOG_LEVEL_ERROR, the same in OpenCV 4 and 5


@contextmanager
def _quiet_opencv():
    """OpenCV logs a warning to stderr for every backend that cannot open a device; the
    PufError says it better. OpenCV 5 keeps the log level in cv2.utils.logging, OpenCV 4 (what
    a numpy 1 install gets) on cv2 itself."""
    logging = getattr(cv2.utils, "logging", cv2)
    level = logging.getLogLevel()
    logging.setLogLevel(_LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class OpenCVSource(FrameSource):
    def __init__(self, target: str, exposure_us: int | None = None, gain: float | None = None) -> None:
        self.spec = f"opencv:{target}"
        live_api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        device: int | str  # a camera number, a device path or a video file
        if target.isdigit():
            device, api, self.live, self._name = int(target), live_api, True, f"USB camera {target}"
        elif target.startswith("/dev/"):
            device, api, self.live, self._name = target, live_api, True, f"USB camera {target}"
        else:
            path = Path(target).expanduser()
            if not path.is_file():
                raise PufError(f"no camera or video file at {self.spec}: give a camera number (opencv:0), "
                               f"a device (opencv:/dev/video0) or a video file")
            device, api, self.live, self._name = str(path), cv2.CAP_ANY, False, f"video {path.name}"
        # read by OpenCV's V4L2 backend once, at the first frame it waits for
        os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", str(STALL_S))
        with _quiet_opencv():
            self._cap: cv2.VideoCapture | None = cv2.VideoCapture(device, api)
        if not self._cap.isOpened():
            self._cap = None
            if self.live:
                raise PufError(f"no camera at {self.spec}; is it plugged in, and not in use by another program? "
                               f"(USB cameras are opencv:0, opencv:1, ...: see ls /dev/video*)")
            raise PufError(f"cannot open the video {device}: not a video OpenCV can read")
        self.exposure: tuple[int | None, float | None] = (None, None)  # as applied: (None, None) is automatic
        if self.live:
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, REQUESTED_SIZE[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, REQUESTED_SIZE[1])
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        try:
            self._read("opened but gives no picture")
            self.set_exposure(exposure_us, gain)
        except BaseException:
            self.close()
            raise

    def _read(self, problem: str = "stopped giving pictures: is it still plugged in?") -> np.ndarray:
        if self._cap is None:
            raise PufError(f"the camera {self.spec} is closed")
        ok, image = self._cap.read()
        if not ok and not self.live:  # the end of a recorded video: play it again
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok or image is None:
            if self.live:
                raise HardwareStopped(f"the camera {self.spec} {problem}")
            raise PufError(f"the video {self.spec} has no frames")
        return as_bgr(image, self.spec)

    def preview_frame(self, max_width: int = 640) -> np.ndarray:
        return downscale(self._read(), max_width)

    def capture(self) -> Frame:
        """The next frame (a camera's buffered one dropped first), at the size verify expects."""
        if self.live and self._cap is not None:
            self._cap.grab()
        image = fit_still(self._read())
        return Frame(image, self.spec, self.exposure[0], self.exposure[1], time.time())

    def set_exposure(self, exposure_us: int | None, gain: float | None) -> None:
        """Manual exposure time where the camera supports it (gain is the camera's own);
        a video's exposure is what was recorded."""
        exposure_us, gain = check_exposure(exposure_us, gain)
        if not self.live or self._cap is None:
            return
        if exposure_us is None:
            self._cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_AUTO)
            self.exposure = (None, None)
        elif (self._cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_MANUAL)
              and self._cap.set(cv2.CAP_PROP_EXPOSURE, max(1, round(exposure_us / _V4L2_EXPOSURE_UNIT_US)))):
            self.exposure = (exposure_us, None)
        else:  # the camera has no manual exposure: it keeps its own, and frames say so
            self.exposure = (None, None)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
