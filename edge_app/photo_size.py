"""A photo's size from its file header, so that one too large for the device's memory is
refused before it is decoded.

Decoding and verifying a photo costs about 6 bytes a pixel (a 20000x20000 photo took
2.4 GB, the app's file camera 3 GB): a 4 GB Raspberry Pi, with the OS, the model and the
shards mapped, has room for about 100 megapixels, several times any camera module's
sensor. The limit is `MAX_PIXELS`, set otherwise by ``$PUF_MAX_PIXELS`` or by the
caller. The header readers cover the formats photos come in (PNG, JPEG, TIFF, BMP);
a file in another format is refused, since its size cannot be known before decoding.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from edge_app.errors import CaptureUnusable, PufError

# A label's side in the handheld photos verify is tuned for (800x600, label filling the camera's
# guide box): enough detail for verify's 128 px crop, small enough to segment fast.
STILL_LABEL_PX = 300.0
MAX_PIXELS = 100_000_000  # default photo limit: about 600 MB to verify, safe on a 4 GB Pi
MAX_PIXELS_ENV = "PUF_MAX_PIXELS"
FORMATS = "PNG, JPEG, TIFF or BMP"

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}


def max_pixels() -> int:
    """The photo limit in pixels: ``$PUF_MAX_PIXELS`` when set, else `MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        return parse_max_pixels(text)
    except PufError as error:
        raise PufError(f"${MAX_PIXELS_ENV}: {error}") from None


def parse_max_pixels(text: str) -> int:
    """A `--max-pixels` value: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise PufError(f"the pixel limit must be a whole number of at least 1, got {text!r}")
    return value


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, TIFF or BMP header; None when the data is none of
    them or the header is cut short."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(data)
        if data.startswith(b"BM"):
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header: 16-bit sides
                return struct.unpack("<HH", data[18:22])
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # negative height: rows stored top down
    except struct.error:  # the header is cut short
        return None
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            at += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if marker == 0xD9:  # end of image before any frame
            return None
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    """The first page's sides (the one OpenCV decodes); classic and BigTIFF."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    at = struct.unpack(order + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    count = struct.unpack(order + ("Q" if big else "H"), data[at:at + (8 if big else 2)])[0]
    at += 8 if big else 2
    size = 20 if big else 12
    sides: dict[int, int] = {}
    for entry in range(min(count, 4096)):
        start = at + entry * size
        tag, kind = struct.unpack(order + "HH", data[start:start + 4])
        if tag in (256, 257):
            value = data[start + (12 if big else 8):start + size]
            if kind == 3:
                sides[tag] = struct.unpack(order + "H", value[:2])[0]
            elif kind == 4:
                sides[tag] = struct.unpack(order + "I", value[:4])[0]
            elif kind == 16 and big:
                sides[tag] = struct.unpack(order + "Q", value[:8])[0]
    return (sides[256], sides[257]) if len(sides) == 2 else None


def size_problem(data: bytes, limit: int | None = None) -> str | None:
    """Why a photo must not be decoded (over `limit` pixels, None: `max_pixels()`, or a
    header that gives no size), as words to follow "the photo is"; None when it may be."""
    limit = max_pixels() if limit is None else limit
    sides = image_dimensions(data)
    if sides is None:
        return f"not a {FORMATS} image, or its header is damaged"
    width, height = sides
    if width * height <= limit:
        return None
    return (f"{width}x{height} pixels ({width * height / 1e6:.0f} megapixels), over this device's limit of "
            f"{limit / 1e6:g} megapixels: take a smaller photo, or raise the limit (--max-pixels, ${MAX_PIXELS_ENV})")


def check_photo_size(data: bytes, path: Path | str, limit: int | None = None) -> None:
    """CaptureUnusable naming the file when `size_problem` finds one."""
    problem = size_problem(data, limit)
    if problem:
        raise CaptureUnusable(f"{path} is {problem}")
