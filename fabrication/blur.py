"""A hand's motion blur: what the simulated handheld camera applies (`fabrication.sim.field_camera`)
and the trainer's augmentation imitates (`trainer.augment`), one function for both, outside the
simulator so that training never imports it."""

from __future__ import annotations

import cv2
import numpy as np


def motion_blur(image: np.ndarray, length_px: int, angle_deg: float) -> np.ndarray:
    """The smear of a hand that moved `length_px` (odd) in direction `angle_deg` while the
    shutter was open."""
    kernel: np.ndarray = np.zeros((length_px, length_px), np.float32)
    kernel[length_px // 2, :] = 1.0 / length_px
    turn = cv2.getRotationMatrix2D((length_px / 2 - 0.5, length_px / 2 - 0.5), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length_px, length_px))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
