"""MMCoreMicroscope against pymmcore-plus's pure-Python devices (no Micro-Manager needed).

`UniMMCore` runs Python device adapters inside the real pymmcore-plus core, so the core's
own stage, camera, pixel-size and MDA machinery are exercised; only the hardware is
simulated: an XY stage over a textured "film", and a camera that sees the film there.
"""

import numpy as np
import pytest

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.calibration import StageCalibration
from fabrication.mmcore import MMCoreMicroscope
from fabrication.stage_plan import plan_positions, write_mda_sequence

pytest.importorskip("pymmcore_plus")
import useq  # noqa: E402
from pymmcore_plus.experimental.unicore import (  # noqa: E402
    SimpleCameraDevice,
    UniMMCore,
    XYStageDevice,
)

PIXEL_UM = 5.0
SENSOR = (40, 60)  # rows, columns
FILM = np.random.default_rng(3).integers(0, 4096, size=(700, 900), dtype=np.uint16)


def film_view(x_um: float, y_um: float) -> np.ndarray:
    """What the camera sees with the stage at (x, y): the film around that point."""
    r0 = round(y_um / PIXEL_UM) - SENSOR[0] // 2
    c0 = round(x_um / PIXEL_UM) - SENSOR[1] // 2
    return FILM[r0:r0 + SENSOR[0], c0:c0 + SENSOR[1]]


class RecordingStage(XYStageDevice):
    """An XY stage that keeps every position it was sent to, within its travel."""

    travel_um = 4000.0
    home_um = (1000.0, 1000.0)

    def __init__(self) -> None:
        super().__init__()
        self.position = self.home_um
        self.visits: list[tuple[float, float]] = []

    def set_position_um(self, x: float, y: float) -> None:
        if not (0 <= x <= self.travel_um and 0 <= y <= self.travel_um):
            raise ValueError(f"({x}, {y}) is beyond the stage's travel")
        self.position = (x, y)
        self.visits.append((x, y))

    def get_position_um(self) -> tuple[float, float]:
        return self.position

    def set_origin_x(self) -> None:
        raise NotImplementedError

    def set_origin_y(self) -> None:
        raise NotImplementedError

    def home(self) -> None:
        self.set_position_um(*self.home_um)

    def stop(self) -> None:
        pass


class FilmCamera(SimpleCameraDevice):
    """A 12-bit mono camera over the film, looking wherever the stage is."""

    def __init__(self, stage: RecordingStage) -> None:
        super().__init__()
        self.stage = stage
        self.exposure = 40.0

    def get_exposure(self) -> float:
        return self.exposure

    def set_exposure(self, exposure: float) -> None:
        self.exposure = exposure

    def sensor_shape(self) -> tuple[int, int]:
        return SENSOR

    def dtype(self) -> type:
        return np.uint16

    def snap(self, buffer: np.ndarray) -> dict:
        buffer[:] = film_view(*self.stage.get_position_um())
        return {}


class ColourCamera(FilmCamera):
    """An 8-bit colour camera writing (H, W, 3) RGB, as pymmcore-plus hands colour frames."""

    def sensor_shape(self) -> tuple[int, int, int]:
        return (*SENSOR, 3)

    def dtype(self) -> type:
        return np.uint8

    def snap(self, buffer: np.ndarray) -> dict:
        buffer[...] = (10, 120, 240)  # red, green, blue
        return {}


class FloatCamera(FilmCamera):
    """A camera handing floating-point pixels, which a Snapshot cannot hold."""

    def dtype(self) -> type:
        return np.float32


def build_core(tmp_path, camera_class=FilmCamera, with_camera=True):
    # mm_path: skip the search for a Micro-Manager installation (there is none here)
    core = UniMMCore(mm_path=str(tmp_path))
    stage = RecordingStage()
    core.loadPyDevice("XY", stage)
    if with_camera:
        core.loadPyDevice("Cam", camera_class(stage))
    core.initializeAllDevices()
    core.setXYStageDevice("XY")
    if with_camera:
        core.setCameraDevice("Cam")
    return core, stage


@pytest.fixture
def rig(tmp_path):
    """Builds pure-Python rigs. Each core must die with its test: a pymmcore core still
    alive when the interpreter exits aborts the process (its notification thread calls
    into Python during finalisation)."""
    return lambda **kwargs: build_core(tmp_path, **kwargs)


def scope_for(core, **kwargs) -> MMCoreMicroscope:
    return MMCoreMicroscope(core=core, pixel_size_um=PIXEL_UM, auto_shutter=False, **kwargs)


PLAN = plan_positions(
    BatchLayout("B0001", ("1",) * 72, field_cols=3, field_rows=2),
    StageCalibration(origin_um=(300.0, 250.0), rotation_deg=1.5),
)


def test_frames_and_positions_follow_the_stage_through_a_plan(rig):
    core, stage = rig()
    scope = scope_for(core)
    assert core.getAutoShutter() is False

    snapshots = []
    for p in PLAN:
        scope.move_to(p.x_um, p.y_um)
        snapshots.append(scope.snap())

    assert stage.visits == [(p.x_um, p.y_um) for p in PLAN]
    for p, shot in zip(PLAN, snapshots, strict=True):
        assert shot.stage_um == (p.x_um, p.y_um)
        assert shot.image.dtype == np.uint16 and shot.image.shape == SENSOR
        np.testing.assert_array_equal(shot.image, film_view(p.x_um, p.y_um))
        assert shot.exposure_ms == 40.0
        assert shot.pixel_size_um == PIXEL_UM
    assert not np.array_equal(snapshots[0].image, snapshots[1].image)


def test_exposure_is_read_from_the_camera(rig):
    core, _ = rig()
    scope = scope_for(core)
    core.setExposure(12.5)
    assert scope.snap().exposure_ms == 12.5


def test_colour_frames_come_out_in_bgr_order(rig):
    core, _ = rig(camera_class=ColourCamera)
    shot = scope_for(core).snap()
    assert shot.image.shape == (*SENSOR, 3) and shot.image.dtype == np.uint8
    assert tuple(shot.image[0, 0]) == (240, 120, 10)  # blue, green, red
    assert shot.image.flags.c_contiguous


def test_pixels_other_than_8_or_16_bit_are_refused(rig):
    core, _ = rig(camera_class=FloatCamera)
    with pytest.raises(PufError, match="float32"):
        scope_for(core).snap()


def test_rig_pixel_calibration_wins_over_the_fallback(rig):
    core, _ = rig()
    core.definePixelSizeConfig("10x")
    core.setPixelSizeUm("10x", 0.65)
    core.setPixelSizeConfig("10x")
    scope = scope_for(core)
    assert scope.pixel_size_um == 0.65
    assert scope.snap().pixel_size_um == 0.65


def test_unknown_pixel_size_is_refused_up_front(rig):
    core, _ = rig()
    with pytest.raises(PufError, match="pixel size"):
        MMCoreMicroscope(core=core)


def test_a_move_the_stage_refuses_stops_with_the_position(rig):
    core, stage = rig()
    scope = scope_for(core)
    with pytest.raises(PufError, match=r"did not move to \(5000\.0, 10\.0\).*travel"):
        scope.move_to(5000.0, 10.0)
    assert stage.visits == []


def test_a_rig_without_camera_is_refused(rig):
    core, _ = rig(with_camera=False)
    with pytest.raises(PufError, match="no camera"):
        scope_for(core)


def test_closing_leaves_a_borrowed_core_loaded_but_stops_the_microscope(rig):
    core, _ = rig()
    with scope_for(core) as scope:
        scope.move_to(100.0, 200.0)
    assert "XY" in core.getLoadedDevices()
    with pytest.raises(PufError, match="closed"):
        scope.snap()


def test_the_written_mda_sequence_runs_in_pymmcore_plus(rig, tmp_path):
    """The plan's useq file is what pymmcore-plus's own acquisition engine runs."""
    core, stage = rig()
    path = tmp_path / "B0001.useq.json"
    write_mda_sequence(path, PLAN, exposure_ms=33.0)
    # pymmcore-plus 0.18's MDA engine, when auto-shutter is on, closes the current shutter
    # after each snap, and the core refuses that on a rig with no shutter device
    # ('No device with label ""'): such rigs run with auto-shutter off.
    core.setAutoShutter(False)
    frames = []
    core.mda.events.frameReady.connect(lambda image, event, meta: frames.append((image, event)))

    core.mda.run(useq.MDASequence.model_validate_json(path.read_text()))

    assert stage.visits == [(p.x_um, p.y_um) for p in PLAN]
    assert core.getExposure() == 33.0
    assert [event.pos_name for _, event in frames] == [p.label for p in PLAN]
    for p, (image, _) in zip(PLAN, frames, strict=True):
        np.testing.assert_array_equal(image, film_view(p.x_um, p.y_um))


# ---- a configuration file ----------------------------------------------------------------

def test_a_missing_configuration_file(tmp_path):
    with pytest.raises(PufError, match="no Micro-Manager configuration"):
        MMCoreMicroscope(tmp_path / "rig.cfg", mm_path=tmp_path)


def test_a_configuration_needing_absent_device_adapters_says_so(tmp_path):
    config = tmp_path / "rig.cfg"
    config.write_text("Device,Camera,DemoCamera,DCam\nProperty,Core,Initialize,1\n")
    with pytest.raises(PufError, match="device adapters"):
        MMCoreMicroscope(config, mm_path=tmp_path, pixel_size_um=1.0)


def test_a_configuration_without_stage_and_camera_is_refused(tmp_path):
    config = tmp_path / "rig.cfg"
    config.write_text("Property,Core,Initialize,1\n")
    with pytest.raises(PufError, match="selects no XY stage and no camera"):
        MMCoreMicroscope(config, mm_path=tmp_path, pixel_size_um=1.0)
