"""A stand-in for picamera2 (0.3.x), for testing the Pi camera backend off a Pi.

Tests put this folder's parent on sys.path (monkeypatch); the product never sees it.
It follows the real API where the backend touches it: configurations are dicts made by
``create_preview_configuration`` / ``create_still_configuration`` (``main`` with ``size``
and ``format``, ``raw``, ``sensor``, ``controls``...), checked by ``configure`` as the real
one checks them (even sizes, known formats, sensor keys, not while started); controls are
checked against ``camera_controls`` (unknown ones raise, as libcamera's list does) and by
type (an ``ExposureTime`` must be an int, as libcamera's int32 control is); configuring
resets the controls to the configuration's; ``capture_array`` returns an array of the
configured size and format ("RGB888" is B, G, R in memory, "BGR888" R, G, B, "XBGR8888"
R, G, B, 255, "XRGB8888" B, G, R, 255), and the ``switch_mode_and_capture_*`` calls
configure the still mode, capture, and switch back.

Where the real one would wait for ever (capturing from a camera that is not started) this
one raises instead. What it photographs is `scene`; each captured frame is announced to
`on_frame`, so a test can see what else (a GPIO pin) was true at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

# What the sensor sees over its whole pixel array (BGR uint8), or a function returning it
# (called for every frame); None: a smooth grey-green gradient.
scene: np.ndarray | Callable[[], np.ndarray] | None = None
# Called as each frame is captured: on_frame(camera, stream_name).
on_frame: Callable[[Picamera2, str], None] | None = None
# True: libcamera >= 0.5's exposure controls (ExposureTimeMode/AnalogueGainMode, no AeEnable).
exposure_modes = False
# The cameras attached (global_camera_info); an empty list: no camera.
cameras = [{"Model": "imx477", "Location": 2, "Rotation": 0, "Id": "/base/soc/i2c0mux/i2c@1/imx477@1a", "Num": 0}]
opened: list[Picamera2] = []  # every camera opened, newest last

REFERENCE_EXPOSURE_US = 10_000  # the scene's brightness at this exposure and gain 1
AUTO_COLOUR_GAINS = (1.9, 1.6)  # what automatic white balance settles on (red, blue)

_SENSOR_RESOLUTION = (4056, 3040)
_SENSOR_MODES = [  # the HQ camera's (IMX477) modes, as picamera2 lists them
    {"format": "SRGGB10_CSI2P", "unpacked": "SRGGB10", "bit_depth": 10, "size": (1332, 990), "fps": 120.05,
     "crop_limits": (696, 528, 2664, 1980), "exposure_limits": (31, 667234896, None)},
    {"format": "SRGGB12_CSI2P", "unpacked": "SRGGB12", "bit_depth": 12, "size": (2028, 1080), "fps": 50.03,
     "crop_limits": (0, 440, 4056, 2160), "exposure_limits": (60, 674181621, None)},
    {"format": "SRGGB12_CSI2P", "unpacked": "SRGGB12", "bit_depth": 12, "size": (2028, 1520), "fps": 40.01,
     "crop_limits": (0, 0, 4056, 3040), "exposure_limits": (60, 674181621, None)},
    {"format": "SRGGB12_CSI2P", "unpacked": "SRGGB12", "bit_depth": 12, "size": (4056, 3040), "fps": 10.0,
     "crop_limits": (0, 0, 4056, 3040), "exposure_limits": (114, 694422939, None)},
]
_CHANNELS = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4, "YUV420": 1}
_STREAM_KEYS = ("format", "size", "stride", "framesize", "preserve_ar")
_CONTROL_TYPES = {"ExposureTime": int, "AnalogueGain": float, "AeEnable": bool, "AwbEnable": bool,
                  "ColourGains": tuple, "FrameDurationLimits": tuple, "NoiseReductionMode": int,
                  "ExposureTimeMode": int, "AnalogueGainMode": int}


def global_camera_info() -> list[dict]:
    return list(cameras)


def _controls_list() -> dict:
    controls = {"ExposureTime": (60, 674181621, None), "AnalogueGain": (1.0, 22.2608699798584, None),
                "AwbEnable": (False, True, None), "ColourGains": (0.0, 32.0, None),
                "FrameDurationLimits": (24994, 674193371, None), "NoiseReductionMode": (0, 4, 0)}
    if exposure_modes:
        controls |= {"ExposureTimeMode": (0, 1, 0), "AnalogueGainMode": (0, 1, 0)}
    else:
        controls["AeEnable"] = (False, True, None)
    return controls


class Picamera2:
    def __init__(self, camera_num: int = 0, verbose_console=None, tuning=None, allocator=None) -> None:
        info = global_camera_info()[camera_num]  # IndexError with no camera there, as the real one
        self.camera_num = camera_num
        self.camera_properties = {"Model": info["Model"], "PixelArraySize": _SENSOR_RESOLUTION,
                                  "ColorFilterArrangement": 0}
        self.camera_controls = _controls_list()
        self.sensor_resolution = _SENSOR_RESOLUTION
        self.camera_config: dict | None = None
        self.started = False
        self.closed = False
        self.controls: dict = {}  # in force now
        self.mode: dict | None = None
        self.frames = 0
        self.configure_count = 0
        opened.append(self)

    # ---- configurations -------------------------------------------------------------------
    @property
    def sensor_modes(self) -> list[dict]:
        self._opened()
        if self.started:
            raise RuntimeError("Camera must be stopped before listing sensor modes")
        return [dict(m) for m in _SENSOR_MODES]

    def _opened(self) -> None:
        if self.closed:
            raise RuntimeError("Camera not opened")

    @staticmethod
    def _stream(defaults: dict, updates: dict | None) -> dict | None:
        if updates is None:
            return None
        stream = dict(defaults)
        for key, value in updates.items():
            if key not in _STREAM_KEYS:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {list(_STREAM_KEYS)}")
            stream[key] = value
        size = stream["size"]
        stream["size"] = (size[0] - size[0] % 2, size[1] - size[1] % 2)  # align_stream(optimal=False)
        return stream

    def _configuration(self, use_case: str, main: dict, default_main: dict, lores, raw, buffer_count: int,
                       controls: dict, display, encode, queue: bool, sensor: dict, transform, colour_space,
                       default_controls: dict) -> dict:
        self._opened()
        main = self._stream(default_main, main)
        lores = self._stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        raw = self._stream({"format": "SRGGB12_CSI2P", "size": main["size"]}, raw)
        config = {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                  "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores, "raw": raw,
                  "controls": default_controls | controls, "sensor": sensor}
        for name in (display, encode):
            if name is not None and config.get(name) is None:
                raise RuntimeError(f"Display stream {name} was not defined")
        config["display"], config["encode"] = display, encode
        return config

    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,  # noqa: B006
                                     buffer_count=4, controls={}, display="main", encode="main", queue=True,  # noqa: B006
                                     sensor={}, use_case="preview") -> dict:  # noqa: B006
        return self._configuration(use_case, main, {"format": "XBGR8888", "size": (640, 480), "preserve_ar": True},
                                   lores, raw, buffer_count, controls, display, encode, queue, sensor, transform,
                                   colour_space, {"NoiseReductionMode": 1, "FrameDurationLimits": (100, 83333)})

    def create_still_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,  # noqa: B006
                                   buffer_count=1, controls={}, display=None, encode=None, queue=True,  # noqa: B006
                                   sensor={}, use_case="still") -> dict:  # noqa: B006
        return self._configuration(use_case, main, {"format": "BGR888", "size": self.sensor_resolution,
                                                    "preserve_ar": True},
                                   lores, raw, buffer_count, controls, display, encode, queue, sensor, transform,
                                   colour_space, {"NoiseReductionMode": 2, "FrameDurationLimits": (100, 10**9)})

    @staticmethod
    def _check_stream(stream, name: str) -> None:
        if type(stream) is not dict:
            raise RuntimeError(f"{name} stream should be a dictionary")
        for key in ("format", "size"):
            if key not in stream:
                raise RuntimeError(f"{key} not found in {name} stream")
        if name == "raw":
            if not stream["format"].startswith("SRGGB"):
                raise RuntimeError(f"Unrecognised raw format {stream['format']}")
        elif stream["format"] not in _CHANNELS:
            raise RuntimeError(f"Bad format {stream['format']} in stream {name}")
        size = stream["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError(f"size in {name} stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def _choose_mode(self, config: dict) -> dict:
        """libcamera's choice of sensor mode, scored as picamera2 scores them."""
        sensor, raw = config.get("sensor") or {}, config.get("raw")
        bad = set(sensor) - {"bit_depth", "output_size"}
        if bad:
            raise RuntimeError(f"Unexpected keys {bad} in sensor configuration")
        output = sensor.get("output_size") or (raw or {}).get("size") or config["main"]["size"]
        depth = sensor.get("bit_depth") or 12

        def score(mode: dict) -> float:
            def part(desired, actual):
                d = desired - actual
                return -d / 4 if d < 0 else d * 2

            ratio = output[0] / output[1]
            s = part(output[0], mode["size"][0]) + part(output[1], mode["size"][1])
            return s + 1500 * part(ratio, mode["size"][0] / mode["size"][1]) + 500 * abs(depth - mode["bit_depth"])

        return min(_SENSOR_MODES, key=score)

    def configure(self, camera_config: dict | None = None) -> None:
        self._opened()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config if camera_config is not None else self.create_preview_configuration())
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        self._check_stream(config["main"], "main")
        for name in ("lores", "raw"):
            if config[name] is not None:
                self._check_stream(config[name], name)
        self.mode = self._choose_mode(config)
        self.controls = {}
        self.set_controls(config["controls"])
        self.camera_config = config
        self.configure_count += 1

    def camera_configuration(self) -> dict | None:
        return self.camera_config

    # ---- running ----------------------------------------------------------------------------
    def start(self, config=None, show_preview=False) -> None:
        self._opened()
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.stop()
        self.closed = True

    def set_controls(self, controls: dict) -> None:
        self._opened()
        for name, value in controls.items():
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            kind = _CONTROL_TYPES.get(name)
            if kind is not None and not (type(value) is kind or (kind is tuple and isinstance(value, list))):
                raise TypeError(f"control {name} takes a {kind.__name__}, not {type(value).__name__} {value!r}")
            self.controls[name] = value

    def _in_force(self) -> tuple[int, float, tuple[float, float]]:
        """Exposure time, gain and colour gains of the next frame (automatic exposure
        settles on the reference exposure)."""
        c, limits = self.controls, self.camera_controls
        if exposure_modes:
            manual_time, manual_gain = c.get("ExposureTimeMode", 0) == 1, c.get("AnalogueGainMode", 0) == 1
        else:
            manual_time = manual_gain = c.get("AeEnable", True) is False
        exposure = c.get("ExposureTime", REFERENCE_EXPOSURE_US) if manual_time else REFERENCE_EXPOSURE_US
        gain = c.get("AnalogueGain", 1.0) if manual_gain else 1.0
        exposure = int(min(max(exposure, limits["ExposureTime"][0]), limits["ExposureTime"][1]))
        gain = float(min(max(gain, limits["AnalogueGain"][0]), limits["AnalogueGain"][1]))
        colour = tuple(c.get("ColourGains", (1.0, 1.0))) if c.get("AwbEnable", True) is False else AUTO_COLOUR_GAINS
        return exposure, gain, colour

    def _frame(self, name: str) -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera is not started: the real picamera2 would wait for a frame for ever")
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not configured")
        view = scene() if callable(scene) else scene
        if view is None:
            ramp = np.linspace(40, 160, 256, dtype=np.float32)
            view = np.dstack([ramp[None, :] * 0.3, ramp[None, :], ramp[None, :] * 0.2]).repeat(192, axis=0)
        # the mode's field of view, at the stream's size
        x, y, w, h = self.mode["crop_limits"]
        sx, sy = view.shape[1] / _SENSOR_RESOLUTION[0], view.shape[0] / _SENSOR_RESOLUTION[1]
        view = view[round(y * sy):round((y + h) * sy), round(x * sx):round((x + w) * sx)]
        width, height = stream["size"]
        view = cv2.resize(view.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        exposure, gain, (red, blue) = self._in_force()
        bgr = view * (exposure / REFERENCE_EXPOSURE_US * gain) * np.array([blue, 1.0, red], np.float32)
        bgr = np.clip(bgr + 0.5, 0, 255).astype(np.uint8)
        fmt = stream["format"]
        if fmt == "YUV420":
            out = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        else:
            out = bgr if fmt in ("RGB888", "XRGB8888") else np.ascontiguousarray(bgr[..., ::-1])
            if _CHANNELS[fmt] == 4:
                out = np.dstack([out, np.full(out.shape[:2], 255, np.uint8)])
        self.frames += 1
        if on_frame is not None:
            on_frame(self, name)
        return out

    def capture_metadata(self, wait=None, signal_function=None) -> dict:
        if not self.started:
            raise RuntimeError("Camera is not started: the real picamera2 would wait for a frame for ever")
        exposure, gain, colour = self._in_force()
        return {"ExposureTime": exposure, "AnalogueGain": gain, "ColourGains": colour, "DigitalGain": 1.0,
                "SensorTimestamp": time.monotonic_ns(), "ScalerCrop": self.mode["crop_limits"]}

    def capture_array(self, name: str = "main", wait=None, signal_function=None) -> np.ndarray:
        self._opened()
        return self._frame(name)

    def _switch(self, camera_config: dict) -> None:
        self.stop()
        self.configure(camera_config)
        self.start()

    def switch_mode_and_capture_arrays(self, camera_config: dict, names=("main",), wait=None, signal_function=None,
                                       delay: int = 0) -> tuple[list[np.ndarray], dict]:
        self._opened()
        if not self.started:
            raise RuntimeError("Camera is not started: the real picamera2 would wait for a frame for ever")
        preview = self.camera_config
        self._switch(camera_config)
        self.frames += delay  # dropped
        result = ([self._frame(name) for name in names], self.capture_metadata())
        self._switch(preview)
        return result

    def switch_mode_and_capture_array(self, camera_config: dict, name: str = "main", wait=None,
                                      signal_function=None, delay: int = 0) -> np.ndarray:
        return self.switch_mode_and_capture_arrays(camera_config, [name], delay=delay)[0][0]
