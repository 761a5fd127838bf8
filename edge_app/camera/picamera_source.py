"""The Raspberry Pi's fluorescence camera: a Pi camera module behind a long-pass filter,
excited by UV LEDs on a GPIO pin. The only module importing picamera2 and gpiozero.

* Live view: a preview configuration (640 px wide, full field of view) streaming
  continuously; `preview_frame` takes its latest frame.
* Capture: a still configuration (high-quality noise reduction, a larger full-view sensor
  mode, scaled by the ISP to the size verify expects), switched to for one frame and back.
  The UV LEDs are on only during it, and off again whatever happens.
* Exposure: manual exposure time and analogue gain (or automatic), and white balance
  always off with fixed colour gains, so a label's fluorescence has the same colour in
  every capture.

Arrays in picamera2's "RGB888" format are B, G, R in memory: OpenCV's order.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_app.camera.base import Frame, FrameSource, as_bgr, check_exposure, downscale, fit_still, still_size
from edge_app.errors import HardwareStopped, PufError

UV_LED_PIN = 17  # BCM numbering (header pin 11); open_camera(led_pin=...) for another
COLOUR_GAINS = (1.0, 1.0)  # red and blue gains: the sensor's own balance, the same for every capture
PREVIEW_WIDTH = 640
AE_SETTLE_FRAMES = 6  # automatic exposure: frames dropped after the switch to the still mode (LEDs on)
INSTALL_HINT = ("picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
                "and create the venv with --system-site-packages")


def _even(width: float, height: float) -> tuple[int, int]:
    return 2 * round(width / 2), 2 * round(height / 2)


def full_view_mode(modes: list[dict], at_least: tuple[int, int]) -> dict | None:
    """The smallest sensor mode that sees the whole sensor (binned, not cropped) and has at
    least `at_least` pixels each way; the largest such mode when none is big enough."""
    if not modes:
        return None
    widest = max(m["crop_limits"][2] * m["crop_limits"][3] for m in modes)
    full = sorted((m for m in modes if m["crop_limits"][2] * m["crop_limits"][3] == widest),
                  key=lambda m: m["size"][0] * m["size"][1])
    big = [m for m in full if m["size"][0] >= at_least[0] and m["size"][1] >= at_least[1]]
    return big[0] if big else full[-1]


def _sensor(mode: dict | None) -> dict:
    return {} if mode is None else {"output_size": tuple(mode["size"]), "bit_depth": mode["bit_depth"]}


def _clamp(value, limits: tuple | None):
    if limits is None:
        return value
    low, high = limits[0], limits[1]
    if low is not None:
        value = max(value, type(value)(low))
    if high is not None:
        value = min(value, type(value)(high))
    return value


class PiCameraSource(FrameSource):
    def __init__(self, camera_num: int = 0, exposure_us: int | None = None, gain: float | None = None,
                 led_pin: int | None = None) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as error:  # not installed, or no libcamera bindings (off a Pi)
            raise PufError(f"{INSTALL_HINT} ({error})") from error
        try:
            from gpiozero import LED
        except ImportError as error:
            raise PufError("gpiozero is not installed (it switches the UV LEDs): on Raspberry Pi OS run "
                           "'sudo apt install python3-gpiozero', or pip install 'puf-labels[pi]'") from error
        self.spec = "picamera2" if camera_num == 0 else f"picamera2:{camera_num}"
        self.exposure: tuple[int | None, float | None] = check_exposure(exposure_us, gain)
        self._cam = self._led = None
        try:
            self._cam = Picamera2(camera_num)
        except Exception as error:  # IndexError or RuntimeError from libcamera: no camera there
            raise PufError(f"no Pi camera at {self.spec} ({type(error).__name__}: {error}): check the ribbon "
                           f"cable, and that 'rpicam-hello --list-cameras' lists the camera") from error
        try:
            pin = UV_LED_PIN if led_pin is None else led_pin
            try:
                self._led = LED(pin, initial_value=False)
            except Exception as error:  # a pin in use, a bad number, no GPIO access
                raise PufError(f"cannot switch the UV LEDs on GPIO {pin}: {error}") from error
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        cam, _ = self._devices()
        model = cam.camera_properties.get("Model")
        self._name = f"Pi camera ({model})" if model else "Pi camera"
        full = tuple(cam.sensor_resolution)
        modes = cam.sensor_modes
        preview = _even(PREVIEW_WIDTH, PREVIEW_WIDTH * full[1] / full[0])
        self._still_size = still_size(*full)
        self._still_sensor = _sensor(full_view_mode(modes, (2 * self._still_size[0], 2 * self._still_size[1])))
        try:
            cam.configure(cam.create_preview_configuration(main={"size": preview, "format": "RGB888"},
                                                           sensor=_sensor(full_view_mode(modes, preview)),
                                                           controls=self._controls()))
            cam.start()
        except Exception as error:
            raise PufError(f"the Pi camera cannot start ({type(error).__name__}: {error})") from error

    def _controls(self) -> dict:
        """The camera controls for the exposure in force, as far as this camera has them
        (libcamera >= 0.5 names the automatic modes ExposureTimeMode/AnalogueGainMode)."""
        available = self._devices()[0].camera_controls
        exposure_us, gain = self.exposure
        manual = exposure_us is not None
        controls: dict = {"AwbEnable": False, "ColourGains": COLOUR_GAINS}
        if "ExposureTimeMode" in available:
            controls |= {"ExposureTimeMode": int(manual), "AnalogueGainMode": int(manual)}
        else:
            controls["AeEnable"] = not manual
        if exposure_us is not None and gain is not None:  # manual: check_exposure gives both or neither
            controls["ExposureTime"] = int(_clamp(exposure_us, available.get("ExposureTime")))
            controls["AnalogueGain"] = float(_clamp(gain, available.get("AnalogueGain")))
        return {name: value for name, value in controls.items() if name in available}

    def _devices(self) -> tuple[Any, Any]:
        """The Picamera2 and the UV LEDs' gpiozero LED (both untyped); PufError once closed."""
        if self._cam is None or self._led is None:
            raise PufError(f"the camera {self.spec} is closed")
        return self._cam, self._led

    def preview_frame(self, max_width: int = 640) -> np.ndarray:
        try:
            image = self._devices()[0].capture_array("main")
        except PufError:
            raise
        except Exception as error:
            raise HardwareStopped(f"the Pi camera stopped ({type(error).__name__}: {error})") from error
        return downscale(as_bgr(image, self.spec), max_width)

    def capture(self) -> Frame:
        """One still in the still configuration, UV LEDs on only while it is taken; the
        exposure and gain recorded are those the camera reports for the frame."""
        cam, led = self._devices()
        manual = self.exposure[0] is not None
        try:
            still = cam.create_still_configuration(main={"size": self._still_size, "format": "RGB888"},
                                                   sensor=self._still_sensor, controls=self._controls())
            led.on()
            try:
                arrays, metadata = cam.switch_mode_and_capture_arrays(still, ["main"],
                                                                      delay=0 if manual else AE_SETTLE_FRAMES)
            finally:
                led.off()
            cam.set_controls(self._controls())  # back in the preview mode: its controls are the configuration's
        except Exception as error:
            raise HardwareStopped(f"the Pi camera failed to capture ({type(error).__name__}: {error})") from error
        exposure, gain = metadata.get("ExposureTime"), metadata.get("AnalogueGain")
        return Frame(fit_still(as_bgr(arrays[0], self.spec)), self.spec, None if exposure is None else int(exposure),
                     None if gain is None else float(gain), time.time())

    def set_exposure(self, exposure_us: int | None, gain: float | None) -> None:
        self.exposure = check_exposure(exposure_us, gain)
        try:
            self._devices()[0].set_controls(self._controls())
        except PufError:
            raise
        except Exception as error:
            raise PufError(f"the Pi camera refused the exposure ({type(error).__name__}: {error})") from error

    def close(self) -> None:
        cam, self._cam = self._cam, None
        led, self._led = self._led, None
        try:
            if cam is not None:
                try:
                    cam.stop()
                finally:
                    cam.close()
        finally:
            if led is not None:
                try:
                    led.off()
                finally:
                    led.close()
