"""Photos for the tests: ones that claim a size in their header (the pixel limit), and a disk
that fills up while fields are written."""

from __future__ import annotations

import errno
import struct
import zlib

import pytest
import tifffile


def png_header(width: int, height: int) -> bytes:
    """The first 33 bytes of a PNG of this size: a photo that claims to be huge, in a tiny file."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


def disk_full_after_one_tiff(monkeypatch: pytest.MonkeyPatch) -> list:
    """`tifffile.imwrite` writes the first image, then fails as a full disk does; returns the
    paths it was asked to write."""
    real_imwrite = tifffile.imwrite
    calls: list = []

    def fill_up(path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_imwrite(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", fill_up)
    return calls
