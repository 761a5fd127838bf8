"""Image files written whole or not at all: a label's crop (PNG, rewritten only when its
bytes changed) and a field's overlay (JPEG)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2

from edge_app.atomic_write import replacing
from edge_app.errors import PufError, cannot_write


def write_crop(path: Path, crop) -> str:
    """Write a crop as PNG (atomically, only if its bytes changed); return their sha256."""
    ok, data = cv2.imencode(".png", crop)
    if not ok:
        raise PufError(f"cannot encode the crop {path.name}")
    payload = data.tobytes()
    digest = hashlib.sha256(payload).hexdigest()
    try:
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return digest
    except OSError as error:
        raise cannot_write(path, error, "the fields recorded so far are kept") from None
    write_atomically(path, payload)
    return digest


def write_atomically(path: Path, payload: bytes) -> None:
    """Write a file under a temporary name and rename it into place: a file that exists is
    whole. A failed write leaves nothing behind and says what to do."""
    try:
        with replacing(path) as tmp:
            tmp.write_bytes(payload)
    except OSError as error:
        raise cannot_write(path, error, "the fields recorded so far are kept") from None


def write_overlay(path: Path, picture) -> None:
    """Write a field's overlay (a BGR image) as JPEG, atomically."""
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if ok:
        write_atomically(path, data.tobytes())
