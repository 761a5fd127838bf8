"""The Pi camera backend, run against a stand-in picamera2 (tests/stand_ins: the real one
imports only on a Pi) and gpiozero's own mock pins: configurations, exposure controls,
white balance off, and the UV LEDs on exactly while the still is taken."""

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.camera import assess, guide_box, open_camera
from edge_app.camera.base import still_size
from edge_app.camera.picamera_source import UV_LED_PIN, full_view_mode
from edge_app.errors import PufError

STAND_INS = Path(__file__).resolve().parents[1] / "stand_ins"
SENSOR = (4056, 3040)
STILL = still_size(*SENSOR)


@pytest.fixture
def picamera2(monkeypatch):
    """The stand-in module, importable as picamera2 for this test only."""
    monkeypatch.syspath_prepend(str(STAND_INS))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    module = importlib.import_module("picamera2")
    assert Path(module.__file__).is_relative_to(STAND_INS)
    monkeypatch.setitem(sys.modules, "picamera2", module)
    for name, value in {"scene": None, "on_frame": None, "exposure_modes": False, "opened": [],
                        "cameras": list(module.cameras)}.items():
        monkeypatch.setattr(module, name, value)
    return module


@pytest.fixture
def pins(monkeypatch):
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", factory)
    yield factory
    factory.reset()


@pytest.fixture
def watched(picamera2, pins):
    """Every frame the camera delivers, with the stream's use case and the LED pin's state
    at that moment."""
    frames = []
    picamera2.on_frame = lambda cam, name: frames.append(
        {"use_case": cam.camera_config["use_case"], "led": pins.pin(UV_LED_PIN).state,
         "size": cam.camera_config[name]["size"], "format": cam.camera_config[name]["format"],
         "mode": cam.mode["size"], "crop": cam.mode["crop_limits"], "controls": dict(cam.controls)})
    return frames


def colour_scene(bgr=(40, 120, 20)) -> np.ndarray:
    return np.full((SENSOR[1] // 8, SENSOR[0] // 8, 3), bgr, np.uint8)


def test_off_a_pi_choosing_it_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # not importable, as on any other machine
    with pytest.raises(PufError, match=r"picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                                       r"python3-picamera2' and create the venv with --system-site-packages"):
        open_camera("picamera2")


def test_the_live_view_is_the_preview_configuration_in_opencv_order(picamera2, watched):
    picamera2.scene = colour_scene()
    with open_camera("picamera2") as camera:
        assert camera.name == "Pi camera (imx477)"
        preview = camera.preview_frame(640)
        assert preview.shape == (480, 640, 3) and preview.dtype == np.uint8
        # B, G, R as the scene has them: "RGB888" taken as OpenCV's order, white balance fixed
        assert np.abs(preview.reshape(-1, 3).mean(axis=0) - (40, 120, 20)).max() < 1
        assert camera.preview_frame(320).shape == (240, 320, 3)
    first = watched[0]
    assert (first["use_case"], first["size"], first["format"]) == ("preview", (640, 480), "RGB888")
    # the whole sensor in view (a binned mode, not the cropped 1332x990 one), as in the still
    assert first["mode"] == (2028, 1520) and first["crop"] == (0, 0, *SENSOR)
    assert first["controls"]["AwbEnable"] is False and first["controls"]["ColourGains"] == (1.0, 1.0)
    assert first["controls"]["AeEnable"] is True


def test_the_uv_leds_are_on_exactly_while_the_still_is_taken(picamera2, pins, watched):
    pin = pins.pin(UV_LED_PIN)
    with open_camera("picamera2") as camera:
        assert pin.state is False  # off from the start
        camera.preview_frame()
        frame = camera.capture()
        assert pin.state is False
        camera.preview_frame()
    assert [(f["use_case"], f["led"]) for f in watched] == [("preview", False), ("still", True), ("preview", False)]
    still = watched[1]
    assert (still["size"], still["format"]) == (STILL, "RGB888")
    assert still["mode"] == (2028, 1520) and still["crop"] == (0, 0, *SENSOR)  # same view as the preview
    assert frame.image.shape == (STILL[1], STILL[0], 3) and frame.source == "picamera2"
    assert guide_box(*STILL)[2] == 300  # a label in the guide box is the size verify expects


def test_the_leds_go_off_when_the_capture_fails(picamera2, pins):
    pin = pins.pin(27)

    def fail_in_the_still(cam, name):
        if cam.camera_config["use_case"] == "still":
            assert pin.state is True
            raise RuntimeError("Camera frontend has timed out!")

    picamera2.on_frame = fail_in_the_still
    with open_camera("picamera2", led_pin=27) as camera:
        with pytest.raises(PufError, match="failed to capture.*timed out"):
            camera.capture()
        assert pin.state is False
        assert pins.pin(UV_LED_PIN).state is False  # the pin asked for, not the default


def test_manual_exposure_and_gain(picamera2, watched):
    picamera2.scene = colour_scene((20, 40, 10))
    with open_camera("picamera2", exposure_us=5_000, gain=1.0) as camera:
        camera.set_exposure(20_000, 2.0)
        camera.preview_frame()
        manual = camera.capture()
        assert (manual.exposure_us, manual.gain) == (20_000, 2.0)
        assert np.abs(manual.image.reshape(-1, 3).mean(axis=0) - (80, 160, 40)).max() < 1.5  # 2 x 2 x the scene
        camera.preview_frame()
        camera.set_exposure(None, None)
        automatic = camera.capture()
        assert (automatic.exposure_us, automatic.gain) == (picamera2.REFERENCE_EXPOSURE_US, 1.0)
        camera.set_exposure(5_000_000, 40.0)  # beyond the sensor's gain: its highest
        assert camera.capture().gain == pytest.approx(22.26, abs=0.01)
    preview, still, after = (f["controls"] for f in watched[:3])
    for controls in (preview, still, after):  # kept through the switch to the still mode and back
        assert controls["AeEnable"] is False and controls["AwbEnable"] is False
        assert controls["ExposureTime"] == 20_000 and controls["AnalogueGain"] == 2.0
    assert still["NoiseReductionMode"] == 2  # the still configuration's high-quality processing
    assert watched[3]["controls"]["AeEnable"] is True and "ExposureTime" not in watched[3]["controls"]


def test_libcamera_exposure_modes(picamera2, watched):
    """libcamera 0.5 replaced AeEnable by ExposureTimeMode and AnalogueGainMode."""
    picamera2.exposure_modes = True
    with open_camera("picamera2", exposure_us=8000, gain=1.5) as camera:
        frame = camera.capture()
        camera.set_exposure(None, None)
        camera.capture()
    assert (frame.exposure_us, frame.gain) == (8000, 1.5)
    manual, automatic = watched[0]["controls"], watched[1]["controls"]
    assert "AeEnable" not in manual and manual["ExposureTimeMode"] == manual["AnalogueGainMode"] == 1
    assert automatic["ExposureTimeMode"] == automatic["AnalogueGainMode"] == 0


def test_a_handheld_photo_through_the_pi_camera(picamera2, pins):
    """The sensor sees a label only while the UV LEDs shine: the preview is dark, the still
    is the label at the size verify expects, and the assist finds it sharp."""
    from fabrication.sim.field_camera import FieldCameraModel, capture_label
    from tests.bundle_support import sim_batch

    batch = sim_batch()
    model = replace(FieldCameraModel(), motion_blur_px=(0.0, 0.5), defocus_px=(0.3, 0.6))
    photo = capture_label(batch.film, batch.layout, 0, 3, 1, model)[0]  # 800x600: the sensor's 4:3 view
    glowing = cv2.resize(photo, (SENSOR[0] // 2, SENSOR[1] // 2), interpolation=cv2.INTER_CUBIC)
    dark = np.zeros_like(glowing)
    led = pins.pin(UV_LED_PIN)
    picamera2.scene = lambda: glowing if led.state else dark
    with open_camera("picamera2", exposure_us=10_000, gain=1.0) as camera:
        preview = camera.preview_frame(640)
        assert assess(preview, guide_box(640, 480)).exposure_state == "dark"
        still = camera.capture().image
    assert still.shape == photo.shape
    assert np.abs(still.astype(int) - photo).mean() < 4
    assist = assess(still, guide_box(still.shape[1], still.shape[0]))
    assert assist.ready, assist


def test_no_camera_or_a_camera_that_dies(picamera2, pins):
    picamera2.cameras = []
    with pytest.raises(PufError, match=r"no Pi camera at picamera2 .*ribbon cable"):
        open_camera("picamera2")
    assert pins.pin(UV_LED_PIN).state is False
    picamera2.cameras = [{"Model": "imx708", "Num": 0}]
    camera = open_camera("picamera2")
    picamera2.opened[-1].close()  # the ribbon cable pulled, as far as the backend can tell
    with pytest.raises(PufError, match="the Pi camera stopped"):
        camera.preview_frame()
    with pytest.raises(PufError, match="failed to capture"):
        camera.capture()
    assert pins.pin(UV_LED_PIN).state is False
    camera.close()
    with pytest.raises(PufError, match="closed"):
        camera.capture()
    camera.close()


def test_a_led_pin_in_use_closes_the_camera_again(picamera2, pins):
    first = open_camera("picamera2", led_pin=22)
    with pytest.raises(PufError, match="cannot switch the UV LEDs on GPIO 22"):
        open_camera("picamera2", led_pin=22)
    assert picamera2.opened[-1].closed and not picamera2.opened[0].closed
    first.close()
    assert picamera2.opened[0].closed
    open_camera("picamera2", led_pin=22).close()  # released


def test_the_stand_in_holds_the_backend_to_the_real_api(picamera2):
    """What the real picamera2 refuses, the stand-in refuses too, so the backend passing
    these tests is not passing against a pushover."""
    cam = picamera2.Picamera2()
    config = cam.create_preview_configuration(main={"size": (641, 481), "format": "RGB888"})
    assert config["main"]["size"] == (640, 480)  # aligned, as the real one aligns
    with pytest.raises(ValueError, match="Bad key"):
        cam.create_still_configuration(main={"resolution": (800, 600)})
    with pytest.raises(RuntimeError, match="not started"):
        cam.configure(config) or cam.capture_array()
    cam.start()
    with pytest.raises(RuntimeError, match="must be stopped"):
        cam.configure(config)
    with pytest.raises(RuntimeError, match="not advertised"):
        cam.set_controls({"Brightness2": 1})
    with pytest.raises(TypeError, match="ExposureTime takes a int"):
        cam.set_controls({"ExposureTime": 1000.0})
    assert cam.capture_array().shape == (480, 640, 3)
    with pytest.raises(RuntimeError, match="Unexpected keys"):
        cam.switch_mode_and_capture_array(cam.create_still_configuration(sensor={"size": (2028, 1520)}))
    cam.close()
    with pytest.raises(RuntimeError, match="Camera not opened"):
        cam.capture_array()
    assert full_view_mode([], (640, 480)) is None
