"""Photos as a camera: one image, or a folder of them taken in name order.

The preview shows the current photo; `capture` returns it and moves to the next, wrapping
round. A photo is read once and its preview downscaled once, so a live view asking for the
preview 30 times a second costs nothing after the first frame.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge_app.camera.base import Frame, FrameSource, as_bgr, check_exposure, downscale
from edge_app.errors import CaptureUnusable, PufError
from edge_app.photo_size import size_problem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def image_files(folder: Path) -> list[Path]:
    """The photos in `folder` (not its subfolders), in name order; hidden files skipped."""
    return sorted((p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def read_photo(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """A photo as BGR uint8 (grey and 16-bit files converted); CaptureUnusable naming the file,
    also for one over `max_pixels` (None: the device's limit, `edge_app.photo_size`),
    refused from its header before it is decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CaptureUnusable(f"cannot read the photo {path}: {error.strerror or error}") from error
    problem = size_problem(data, max_pixels) if data else None
    if problem:
        raise CaptureUnusable(f"cannot read the photo {path}: it is {problem}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise CaptureUnusable(f"cannot read the photo {path}: not a readable "
                              f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES)} image (damaged, or another kind of file)")
    return as_bgr(image, str(path))


def placeholder(message: Sequence[str], width: int) -> np.ndarray:
    """A dark 4:3 frame saying why there is no picture (the preview of an unreadable photo)."""
    height = width * 3 // 4
    image = np.full((height, width, 3), 40, np.uint8)
    scale = width / 900
    for i, line in enumerate(message):
        cv2.putText(image, line, (round(width * 0.05), round(height * (0.45 + 0.1 * i))), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (230, 230, 230), max(1, round(2 * scale)), cv2.LINE_AA)
    return image


class FileSource(FrameSource):
    def __init__(self, path: Path) -> None:
        if path.is_dir():
            self.paths = image_files(path)
            if not self.paths:
                raise PufError(f"the folder {path} holds no photos ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise PufError(f"{path} is not a photo: expected one of {', '.join(IMAGE_SUFFIXES)}")
            self.paths = [path]
        else:
            raise PufError(f"no such photo or folder: {path}")
        self.path = path
        self.folder = path.is_dir()
        self.index = 0
        self._image: tuple[int, np.ndarray | str] | None = None  # the current photo (or why not), read once
        self._preview: tuple[tuple[int, int], np.ndarray] | None = None  # (index, width): its preview

    @property
    def name(self) -> str:
        if self.folder:
            return f"file: {self.path.name}/ ({self.index + 1} of {len(self.paths)})"
        return f"file: {self.path.name}"

    def _current(self) -> np.ndarray:
        if self._image is None or self._image[0] != self.index:
            try:
                image: np.ndarray | str = read_photo(self.paths[self.index])
            except CaptureUnusable as error:
                image = str(error)
            self._image = (self.index, image)
        if isinstance(self._image[1], str):
            raise CaptureUnusable(self._image[1])
        return self._image[1]

    def preview_frame(self, max_width: int = 640) -> np.ndarray:
        key = (self.index, max_width)
        if self._preview is None or self._preview[0] != key:
            try:
                photo = self._current()
            except PufError:  # said when captured; the live view shows why there is no picture
                photo = placeholder(["Cannot read this photo:", self.paths[self.index].name[:40]], max(max_width, 16))
            preview = downscale(photo, max_width).view()  # read-only below, the photo not
            preview.flags.writeable = False
            self._preview = (key, preview)
        return self._preview[1]

    def capture(self) -> Frame:
        """The current photo; the next capture takes the next one (also after an unreadable
        one, which raises PufError naming it)."""
        path = self.paths[self.index]
        try:
            image = self._current()
        finally:
            self.index = (self.index + 1) % len(self.paths)
        return Frame(image.copy(), str(path), None, None, time.time())

    def set_exposure(self, exposure_us: int | None, gain: float | None) -> None:
        """Photos are already taken: checked, and nothing to set."""
        check_exposure(exposure_us, gain)

    def close(self) -> None:
        self._image = self._preview = None
