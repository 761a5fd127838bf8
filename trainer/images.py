"""Image files the trainer and its harness read: 8-bit BGR, or a PufError naming the file
(OpenCV's own reader returns None for a missing or unreadable file)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import PufError


def read_bgr(path: Path | str) -> np.ndarray:
    """The image at `path` as 8-bit BGR."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PufError(f"{path} is missing or not an image OpenCV can read")
    return image
