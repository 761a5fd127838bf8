"""Start the app: its options, Kivy's configuration (which must be set before Kivy opens
the window), and the run. Kivy is imported only inside these functions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge_app.device_store import DeviceStore


@dataclass(frozen=True)
class AppOptions:
    home: Path | None = None  # the DeviceStore's folder (None: $PUF_HOME or ~/.local/share/puf)
    bundle: Path | None = None  # verify with this bundle instead of the installed one
    trusted_keys: Path | None = None
    camera: str | None = None  # None: the saved setting
    exposure_us: int | None = None  # None: the saved setting (None there too: automatic)
    gain: float | None = None
    fullscreen: bool = False
    size: tuple[int, int] = (800, 480)
    language: str | None = None  # None: the saved setting, else the environment's (LANGUAGE, LANG), else English


def configure_kivy(options: AppOptions) -> None:
    """Window size, full screen and input settings for this run (not written to Kivy's
    config.ini). Must run before anything imports kivy.core.window."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")  # the app's options are ours, not Kivy's
    from kivy.config import Config

    width, height = options.size
    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "fullscreen", "auto" if options.fullscreen else "0")
    Config.set("graphics", "show_cursor", "0" if options.fullscreen else "1")
    Config.set("input", "mouse", "mouse,multitouch_on_demand")  # no red multitouch dots on right click
    # A touch screen reaches the app through the desktop as the pointer; reading its device
    # directly too (Kivy's default probesysfs provider) would deliver every tap twice.
    if Config.has_option("input", "%(name)s"):
        Config.remove_option("input", "%(name)s")
    Config.set("kivy", "exit_on_escape", "0" if options.fullscreen else "1")
    quiet_probes()


def quiet_probes() -> None:
    """Kivy probes at start for two things the app never uses, and logs each one missing as an
    error with a traceback: the kernel's multitouch library (libmtdev; the touch screen reaches the
    app as the desktop's pointer, above) and an X11 cut buffer (xclip or xsel: middle-click paste
    into the one text box). Those probes run here, in the imports that make them, with Kivy's log
    held for just that time, so a normal run's log shows only what matters."""
    from kivy.logger import Logger

    level = Logger.level
    Logger.setLevel(logging.CRITICAL + 1)
    try:
        import kivy.core.clipboard  # noqa: F401 (the cut buffer probe)
        import kivy.input.providers  # noqa: F401 (the libmtdev probe)
    finally:
        Logger.setLevel(level)


def run_app(options: AppOptions) -> int:
    store = DeviceStore(options.home)  # a home that cannot be made is a PufError before any window opens
    configure_kivy(options)
    from edge_app.app.puf_app import PufApp  # Kivy's window: after configure_kivy

    PufApp(options, store).run()
    return 0
