"""The microscope role: an XY stage with a camera, behind one interface.

Backends: the simulated microscope (`fabrication.sim.microscope`) and a Micro-Manager rig
through pymmcore-plus (`fabrication.mmcore`). The photography runner
(`fabrication.photograph`) only talks to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Self

import numpy as np


@dataclass
class Snapshot:
    """One camera frame and what is known about it."""

    image: np.ndarray  # uint8 or uint16; (H, W) mono or (H, W, 3) in OpenCV's BGR order
    exposure_ms: float
    stage_um: tuple[float, float]  # where the stage reported it was
    pixel_size_um: float
    # Simulated backends only: where each label really is in the image (ground truth).
    truth: dict | None = None
    extra: dict = field(default_factory=dict)


class Microscope(ABC):
    """An XY stage and a camera. Positions are stage micrometres."""

    @abstractmethod
    def move_to(self, x_um: float, y_um: float) -> None:
        """Move the stage and wait until it has arrived."""

    @abstractmethod
    def position_um(self) -> tuple[float, float]: ...

    @abstractmethod
    def snap(self) -> Snapshot:
        """Take one frame at the current position."""

    @property
    @abstractmethod
    def pixel_size_um(self) -> float: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the hardware."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
