"""The backend a camera spec names (`edge_app.camera.base` describes the specs), opened."""

from __future__ import annotations

from pathlib import Path

from edge_app.camera.base import SPECS, FrameSource, check_exposure
from edge_app.camera.file_source import FileSource
from edge_app.camera.opencv_source import OpenCVSource
from edge_app.camera.picamera_source import PiCameraSource
from edge_app.errors import PufError


def open_camera(spec: str, *, exposure_us: int | None = None, gain: float | None = None,
                led_pin: int | None = None) -> FrameSource:
    """The frame source a spec names (`edge_app.camera.base` lists them), opened and ready.
    `led_pin`: the UV LEDs' GPIO (BCM) pin on the Pi; None for the backend's default."""
    exposure_us, gain = check_exposure(exposure_us, gain)
    kind, _, target = str(spec).strip().partition(":")
    if kind == "file" and target:
        return FileSource(Path(target).expanduser())
    if kind == "opencv" and target:
        return OpenCVSource(target, exposure_us, gain)
    if kind == "picamera2" and (not target or target.isdigit()):
        return PiCameraSource(int(target or 0), exposure_us, gain, led_pin)
    raise PufError(f"unknown camera {spec!r}: use {SPECS}")
