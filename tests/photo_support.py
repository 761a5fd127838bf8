"""Photos that claim a size in their header, for the tests of the pixel limit."""

from __future__ import annotations

import struct
import zlib


def png_header(width: int, height: int) -> bytes:
    """The first 33 bytes of a PNG of this size: a photo that claims to be huge, in a tiny file."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
