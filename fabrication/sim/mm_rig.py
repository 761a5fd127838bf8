"""The simulated microscope as Micro-Manager devices, for pymmcore-plus's `UniMMCore`.

`FilmStage` (an XY stage) and `FilmCamera` (a colour camera) are pure-Python device
adapters: a Micro-Manager configuration loads them with ``#py pyDevice`` lines, so
`puf photograph --mm-config` runs pymmcore-plus's own acquisition engine over the
simulated film exactly as it runs a real rig. `rig_config` writes such a configuration
for a batch etched with ``puf etch --sim``.

Both devices name the batch folder (and the fault seed) in their pre-initialisation
properties ``Batch`` and ``Seed``; devices naming the same batch and seed share one
`SimulatedMicroscope`, the way a real stage and camera share one sample. Like
Micro-Manager's demo devices, they can be told to fail: the stage refuses moves beyond
``TravelUm``, the camera fails its ``FailAtSnap``-th picture.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from pymmcore_plus.experimental.unicore import SimpleCameraDevice, StateDevice, XYStageDevice, pymm_property

from edge_app.errors import PufError
from fabrication.batch_dir import BatchDir
from fabrication.calibration import StageCalibration
from fabrication.sim.film import EtchedFilm
from fabrication.sim.microscope import SimulatedMicroscope

# batch folder and seed -> the shared microscope and how many loaded devices hold it: the
# microscope (its shot counts) lives exactly as long as a rig over it is loaded
_SCOPES: dict[tuple[str, int], list] = {}
_SCOPES_LOCK = threading.Lock()  # UniMMCore initialises devices in parallel threads


def _hold(batch: str, seed: int) -> SimulatedMicroscope:
    """The one simulated microscope over this batch's film, for one more device."""
    root = Path(batch).resolve()
    folder = BatchDir(root)
    with _SCOPES_LOCK:
        key = (str(root), seed)
        if key not in _SCOPES:
            film = folder.film_path
            if not film.is_file():
                raise PufError(f"no simulated film at {film}: run 'puf etch {root} --sim' first")
            _SCOPES[key] = [SimulatedMicroscope(
                EtchedFilm.load(film), folder.layout(),
                StageCalibration.load(folder.calibration_path), seed=seed), 0]
        _SCOPES[key][1] += 1
        return _SCOPES[key][0]


def _release(batch: str, seed: int) -> None:
    with _SCOPES_LOCK:
        key = (str(Path(batch).resolve()), seed)
        _SCOPES[key][1] -= 1
        if _SCOPES[key][1] == 0:
            del _SCOPES[key]


class _OnFilm:
    """The pre-initialisation properties that tie a device to a batch's film."""

    _batch = ""
    _seed = 0

    @pymm_property(is_pre_init=True, name="Batch")
    def batch(self) -> str:
        """Folder of a batch etched with 'puf etch --sim'."""
        return self._batch

    @batch.setter  # type: ignore[no-redef]  # mypy knows this form for the builtin property only
    def batch(self, value: str) -> None:
        self._batch = value

    @pymm_property(is_pre_init=True, name="Seed")
    def seed(self) -> int:
        return self._seed

    @seed.setter  # type: ignore[no-redef]  # mypy knows this form for the builtin property only
    def seed(self, value: int) -> None:
        self._seed = int(value)

    _scope: SimulatedMicroscope | None = None

    def initialize(self) -> None:
        if not self._batch:
            raise ValueError("the property Batch names no batch folder")
        self._scope = _hold(self._batch, self._seed)

    def shutdown(self) -> None:
        if self._scope is not None:
            self._scope = None
            _release(self._batch, self._seed)

    def scope(self) -> SimulatedMicroscope:
        if self._scope is None:
            raise RuntimeError("the device is not initialised")
        return self._scope


class FilmStage(_OnFilm, XYStageDevice):
    """An XY stage over the simulated film; a move beyond its travel is refused."""

    _travel_um = 1e6

    @pymm_property(limits=(0.0, 1e7), name="TravelUm")
    def travel_um(self) -> float:
        """Largest |x| or |y| the stage reaches, µm."""
        return self._travel_um

    @travel_um.setter  # type: ignore[no-redef]  # mypy knows this form for the builtin property only
    def travel_um(self, value: float) -> None:
        self._travel_um = float(value)

    def set_position_um(self, x: float, y: float) -> None:
        if max(abs(x), abs(y)) > self._travel_um:
            raise ValueError(f"({x:.1f}, {y:.1f}) µm is beyond the stage's travel of "
                             f"±{self._travel_um:g} µm")
        self.scope().move_to(x, y)

    def get_position_um(self) -> tuple[float, float]:
        return self.scope().position_um()

    def set_origin_x(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin")

    def set_origin_y(self) -> None:
        raise NotImplementedError("the simulated stage has a fixed origin")

    def home(self) -> None:
        self.scope().move_to(0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""


class FilmCamera(_OnFilm, SimpleCameraDevice):
    """A 1920x1440 8-bit colour camera seeing the film wherever the stage is."""

    _exposure_ms = 40.0
    _fail_at = 0
    _snaps = 0

    def initialize(self) -> None:
        super().initialize()
        self._shape = self.scope().model.height_px, self.scope().model.width_px, 3

    @pymm_property(limits=(0, 1_000_000), name="FailAtSnap")
    def fail_at_snap(self) -> int:
        """Fail the N-th picture (0: never), as a camera that stops answering."""
        return self._fail_at

    @fail_at_snap.setter  # type: ignore[no-redef]  # mypy knows this form for the builtin property only
    def fail_at_snap(self, value: int) -> None:
        self._fail_at = int(value)

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    def sensor_shape(self) -> tuple[int, int, int]:
        return self._shape

    def dtype(self) -> type:
        return np.uint8

    def snap(self, buffer: np.ndarray) -> dict:
        self._snaps += 1
        if self._snaps == self._fail_at:
            raise OSError(f"the simulated camera failed its picture {self._snaps} (FailAtSnap)")
        buffer[:] = self.scope().snap().image[..., ::-1]  # BGR -> RGB, as colour cameras hand it
        return {}


class FixedState(StateDevice):
    """A state device with one position (the rig's objective turret, its emission filter),
    so the frames' metadata can name the optics, as a real rig's turret and wheel do."""

    def __init__(self, label: str) -> None:
        super().__init__({0: label})

    def get_state(self) -> int:
        return 0

    def set_state(self, position: int) -> None:
        if position != 0:
            raise ValueError("the simulated rig has one position")


class FilmObjective(FixedState):
    def __init__(self) -> None:
        super().__init__(OBJECTIVE)


class FilmEmissionFilter(FixedState):
    def __init__(self) -> None:
        super().__init__(EMISSION_FILTER)


# the simulated rig's optics: the camera's 0.6 um pixels, CsPbBr3's emission (PL peak near 513 nm,
# fabrication.sim.optics) through a band-pass; the channel is named by what it shows
OBJECTIVE = "simulated 0.6 um/px"
EMISSION_FILTER = "513/20"
CHANNEL = "CsPbBr3 513nm"


def rig_config(batch_dir: Path, seed: int = 0) -> str:
    """A Micro-Manager configuration of the simulated rig over `batch_dir`'s film.

    It defines no pixel size: pymmcore-plus 0.18 matches pixel-size presets against
    C++ devices only, so the rig runs with `puf photograph --pixel-size-um` (default 0.6 µm,
    the simulated camera's)."""
    batch = str(Path(batch_dir).resolve())
    if "," in batch:
        raise ValueError(f"a Micro-Manager configuration cannot name a folder with a comma: {batch}")
    return "\n".join([
        "# The simulated microscope of puf-labels: pure-Python devices for pymmcore-plus's UniMMCore",
        "Property,Core,Initialize,0",
        f"#py pyDevice,Stage,{__name__},FilmStage",
        f"#py pyDevice,Camera,{__name__},FilmCamera",
        f"#py pyDevice,Objective,{__name__},FilmObjective",
        f"#py pyDevice,Emission,{__name__},FilmEmissionFilter",
        f"#py Property,Stage,Batch,{batch}",
        f"#py Property,Stage,Seed,{seed}",
        f"#py Property,Camera,Batch,{batch}",
        f"#py Property,Camera,Seed,{seed}",
        "Property,Core,Initialize,1",
        "#py Property,Core,XYStage,Stage",
        "#py Property,Core,Camera,Camera",
        "#py Property,Core,AutoShutter,0",
        f"#py ConfigGroup,Channel,{CHANNEL},Emission,Label,{EMISSION_FILTER}",
        "#py Property,Core,ChannelGroup,Channel",
        f"#py Property,Emission,Label,{EMISSION_FILTER}",
        "",
    ])
