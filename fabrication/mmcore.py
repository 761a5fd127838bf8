"""A Micro-Manager microscope through pymmcore-plus (the optional 'microscope' extra).

pymmcore-plus is imported only when a core is built from a configuration file, so this
module costs nothing until a real rig is chosen. For tests, pass an already-loaded core:
pymmcore-plus's `UniMMCore` with pure-Python devices runs without any Micro-Manager
installation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_app.errors import PufError, require_module
from fabrication.microscope import Microscope, Snapshot

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

# What a device refusal looks like: pymmcore turns the C++ core's CMMError into
# RuntimeError; pure-Python devices raise their own (ValueError, serial's OSError, ...).
_DEVICE_ERRORS = (RuntimeError, ValueError, OSError)


class MMCoreMicroscope(Microscope):
    """The core's current XY stage and camera as a `Microscope`.

    Give either `config_file` (a Micro-Manager ``.cfg``; the core is built, owned and released
    by this object) or `core` (already loaded; the caller keeps ownership).
    `pixel_size_um` is used when the rig has no pixel-size calibration (the core reports
    0). `auto_shutter` sets the core's auto-shutter; None keeps what the configuration
    says. Note that pymmcore-plus 0.18's `UniMMCore` does not open a shutter around a
    *Python* camera's snap even with auto-shutter on, so pure-Python rigs run with it off
    and open their excitation themselves.
    """

    def __init__(self, config_file: Path | str | None = None, *, core: CMMCorePlus | None = None,
                 pixel_size_um: float | None = None, auto_shutter: bool | None = None,
                 mm_path: Path | str | None = None) -> None:
        if (config_file is None) == (core is None):
            raise PufError("give either a Micro-Manager configuration file or a loaded core")
        if pixel_size_um is not None and not pixel_size_um > 0:
            raise PufError(f"pixel size must be positive, got {pixel_size_um}")
        self._owned = core is None
        if core is None:
            assert config_file is not None  # one of the two, checked above
            core = _load(Path(config_file), mm_path)
        self._core: CMMCorePlus | None = core
        self._fallback_pixel_um = pixel_size_um
        try:
            if auto_shutter is not None:
                core.setAutoShutter(auto_shutter)
            self._xy_stage = core.getXYStageDevice()
            self._camera = core.getCameraDevice()
            missing = [name for name, label in (("XY stage", self._xy_stage),
                                                ("camera", self._camera)) if not label]
            if missing:
                raise PufError(f"the Micro-Manager configuration selects no "
                               f"{' and no '.join(missing)} (set Core-XYStage and Core-Camera)")
            _ = self.pixel_size_um  # fail now, not at the first field, if it is unknown
        except BaseException:
            self.close()
            raise

    @property
    def core(self) -> CMMCorePlus:
        if self._core is None:
            raise PufError("the Micro-Manager microscope is closed")
        return self._core

    def move_to(self, x_um: float, y_um: float) -> None:
        try:
            self.core.setXYPosition(x_um, y_um)
            self.core.waitForDevice(self._xy_stage)
        except _DEVICE_ERRORS as error:
            raise PufError(f"the stage {self._xy_stage!r} did not move to "
                           f"({x_um:.1f}, {y_um:.1f}) µm: {error}") from None

    def position_um(self) -> tuple[float, float]:
        x, y = self.core.getXYPosition()
        return float(x), float(y)

    @property
    def pixel_size_um(self) -> float:
        """The rig's calibrated pixel size for the current objective, else the fallback."""
        size = float(self.core.getPixelSizeUm())
        if size > 0:
            return size
        if self._fallback_pixel_um is None:
            raise PufError("Micro-Manager has no pixel size for the current configuration; "
                           "calibrate one or give the pixel size")
        return self._fallback_pixel_um

    def snap(self) -> Snapshot:
        core = self.core
        try:
            core.snapImage()
            image = core.getImage()
        except _DEVICE_ERRORS as error:
            raise PufError(f"the camera {self._camera!r} did not take a picture: {error}") \
                from None
        return Snapshot(
            image=snapshot_image(image),
            exposure_ms=float(core.getExposure()),
            stage_um=self.position_um(),
            pixel_size_um=self.pixel_size_um,
            extra={"camera": self._camera, "bit_depth": int(core.getImageBitDepth())},
        )

    def close(self) -> None:
        """Release a core this object built.

        A pymmcore core that is still alive when the interpreter exits can abort the
        process ("FATAL: exception not rethrown"): its notification thread calls into
        Python after finalisation has begun. CMMCorePlus.__del__ unregisters that callback,
        but reference cycles (an error's frames, UniMMCore's own) can keep the core alive
        until exit, so the callback is unregistered here, as __del__ would, while Python
        is surely still running.
        """
        core, self._core = self._core, None
        if core is not None and self._owned:
            from pymmcore_plus import CMMCorePlus

            core.unloadAllDevices()
            super(CMMCorePlus, core).registerCallback(None)  # what CMMCorePlus.__del__ does


def _load(config: Path, mm_path: Path | str | None) -> CMMCorePlus:
    """A core of the rig in `config`: pymmcore-plus's UniMMCore, which loads Micro-Manager's
    C++ device adapters and, from ``#py`` lines, pure-Python devices (the simulated rig)."""
    require_module("pymmcore_plus", "microscope")
    from pymmcore_plus import DeviceInitializationState, find_micromanager
    from pymmcore_plus.experimental.unicore import UniMMCore

    if not config.is_file():
        raise PufError(f"no Micro-Manager configuration at {config}")
    if mm_path is None and not find_micromanager(return_first=False):
        # no Micro-Manager here: a rig of pure-Python devices needs none, and pointing the
        # core at a folder spares it a search that logs an error
        mm_path = config.parent
    core = UniMMCore(mm_path=str(mm_path) if mm_path is not None else None)
    try:
        with pymmcore_warnings() as said:
            core.loadSystemConfiguration(str(config))
        failed = [label for label in core.getLoadedDevices() if label != "Core"
                  and core.getDeviceInitializationState(label)
                  == DeviceInitializationState.InitializationFailed]
        if failed:
            raise PufError(f"Micro-Manager could not initialise the device(s) {', '.join(failed)} of "
                           f"{config}{': ' + said[-1] if said else ''}")
    except (RuntimeError, OSError) as error:
        core.unloadAllDevices()
        raise PufError(
            f"Micro-Manager could not load {config}: {error} (are Micro-Manager's device "
            "adapters installed? `mmcore install`, or pass the Micro-Manager folder)"
        ) from None
    except PufError:
        core.unloadAllDevices()
        raise
    return core


def snapshot_image(image: np.ndarray) -> np.ndarray:
    """A camera frame as our Snapshot holds it: uint8/uint16, mono or BGR.

    CMMCorePlus.getImage() hands colour frames as (H, W, 3) in RGB order (it unpacks
    Micro-Manager's BGRA pixels and reorders them); OpenCV and the rest of this project
    expect BGR.
    """
    if image.dtype not in (np.uint8, np.uint16):
        raise PufError(f"camera pixels of type {image.dtype} are not supported "
                       "(8- or 16-bit mono or RGB are)")
    if image.ndim == 2:
        return image.copy()
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[..., ::-1])
    raise PufError(f"camera frame of shape {image.shape} is neither mono nor RGB")


@contextmanager
def pymmcore_warnings() -> Iterator[list[str]]:
    """The warnings pymmcore-plus logs meanwhile (its engine logs device failures and goes
    on; UniMMCore logs a device that failed to initialise, with its traceback): the words a
    PufError can quote. Those of its devices' module loggers are kept from the terminal."""
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            error = record.exc_info[1] if record.exc_info else None
            kept.append(record.getMessage() + (f": {error}" if error is not None else ""))

    handler = Keep(logging.WARNING)
    loggers = [logging.getLogger("pymmcore-plus"), logging.getLogger("pymmcore_plus")]
    propagates = loggers[1].propagate
    for logger in loggers:
        logger.addHandler(handler)
    loggers[1].propagate = False
    try:
        yield kept
    finally:
        loggers[1].propagate = propagates
        for logger in loggers:
            logger.removeHandler(handler)
