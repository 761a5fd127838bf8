"""Cameras for the handheld app: one frame-source interface (`FrameSource`, opened by
`open_camera`) with file, OpenCV and picamera2 backends, and the capture assist."""

from edge_app.camera.assist import CaptureAssist, assess, guide_box
from edge_app.camera.backends import open_camera
from edge_app.camera.base import Frame, FrameSource

__all__ = ["CaptureAssist", "Frame", "FrameSource", "assess", "guide_box", "open_camera"]
