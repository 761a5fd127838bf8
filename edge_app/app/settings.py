"""The settings screen (`settings.kv`): the bundle and its update from a USB stick, the camera
and its exposure, the label size, the language. Each change the inspector makes is saved for
the next start."""

from __future__ import annotations

import getpass
import logging
import math
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

from kivy.clock import Clock
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen

from edge_app.app.i18n import N_, _, languages
from edge_app.app.inspection import BundleStatus, Trouble, trouble_of
from edge_app.app.widgets import COLOURS, OK_COLOUR
from edge_app.camera.base import STILL_SHORT_PX
from edge_app.errors import PufError
from edge_app.label_size import parse_label_px

if TYPE_CHECKING:
    from edge_app.app.puf_app import PufApp

log = logging.getLogger(__name__)

EXPOSURE_US = (100, 200_000)  # the manual exposure slider's range, microseconds (log scale)
GAIN = (1.0, 16.0)
AUTO_LABEL_SIZE = N_("auto: found in each photo")
BUSY = N_("Busy: try again when the check has finished.")
CAMERAS = ["picamera2", "opencv:0", "opencv:1"]  # the camera list's choices, beside the one in use


def exposure_slider(value_us: float) -> float:
    """The exposure slider's position (log10 of microseconds) for an exposure time."""
    low, high = EXPOSURE_US
    return math.log10(min(max(value_us, low), high))


def removable_media_root() -> Path:
    """Where a USB stick shows up: /media/USER (Raspberry Pi OS), /media, else home."""
    for path in (Path("/media") / getpass.getuser(), Path("/media"), Path("/mnt")):
        if path.is_dir() and any(path.iterdir()):
            return path
    return Path.home()


class FolderChooser(ModalView):
    """Pick a folder (a USB stick's bundle, or a folder of photos) with rows big enough
    for a finger: open folders by tapping them, then choose the one you are in."""

    path = StringProperty("")
    heading = StringProperty("")
    action = StringProperty("")
    chosen = ObjectProperty(None, allownone=True)  # called with the folder
    note = StringProperty("")
    holds_bundle = BooleanProperty(False)
    for_bundle = BooleanProperty(False)  # only a folder holding a bundle can be chosen

    def on_path(self, _view, path: str) -> None:
        if "folders" not in self.ids:  # set before the layout is built: listed from on_kv_post
            return
        try:
            names = sorted((p.name for p in Path(path).iterdir() if p.is_dir() and not p.name.startswith(".")),
                           key=str.lower)
        except OSError as error:
            names, self.note = [], _("cannot open {path}: {cause}").format(path=path, cause=error.strerror or error)
        else:
            self.holds_bundle = (Path(path) / "manifest.json").is_file()
            self.note = _("this folder holds a bundle") if self.holds_bundle else (
                _("open the folder that holds the bundle") if self.for_bundle else "")
        self.ids.folders.data = [{"text": name, "chooser": self} for name in names]

    def enter(self, name: str) -> None:
        self.path = str(Path(self.path) / name)

    def up(self) -> None:
        self.path = str(Path(self.path).parent)

    def choose(self) -> None:
        self.dismiss()
        self.chosen(Path(self.path))


class FolderRow(ButtonBehavior, Label):
    chooser = ObjectProperty(None, allownone=True)


class SettingsScreen(Screen):
    message = StringProperty("")
    message_colour = ColorProperty((1, 1, 1, 1))
    bundle_detail = StringProperty("")
    camera_choices = ListProperty()
    auto_exposure = BooleanProperty(True)
    exposure_us = NumericProperty(10_000)
    gain = NumericProperty(2.0)
    label_size_text = StringProperty(AUTO_LABEL_SIZE)
    language_name = StringProperty("English")
    language_choices = ListProperty()  # every language the app has, each by its own name
    journal_text = StringProperty("")


class SettingsController:
    """Applies what the inspector sets here, on the worker where it touches the bundle, and
    says in the screen's message line what came of it."""

    def __init__(self, app: PufApp) -> None:
        self.app = app
        self._apply_exposure = Clock.create_trigger(self._set_exposure, 0.4)
        app.bind(camera_spec=self._camera_listed, label_px=self._label_px_shown)

    @cached_property
    def screen(self) -> SettingsScreen:
        # made with the texts its lists show: a list's text set while the kv is applied is a choice
        return SettingsScreen(name="settings", language_choices=list(languages().values()),
                              language_name=languages()[self.app.language],
                              label_size_text=self._label_size(self.app.label_px))

    def redraw(self) -> None:
        """Show again in the language in use."""
        self.screen.language_name = languages()[self.app.language]
        self._label_px_shown(self.app, self.app.label_px)

    def _say(self, message: str, colour=(1, 1, 1, 1)) -> None:
        self.screen.message_colour = colour
        self.screen.message = message

    def load(self, saved: dict, options) -> None:
        """The exposure to open the camera with: given to `puf app`, else saved, else automatic."""
        exposure = options.exposure_us if options.exposure_us is not None else saved.get("exposure_us")
        gain = options.gain if options.gain is not None else saved.get("gain")
        screen = self.screen
        screen.auto_exposure = exposure is None and gain is None
        screen.exposure_us = exposure or screen.exposure_us
        screen.gain = gain or screen.gain
        screen.journal_text = str(self.app.store.journal_path)

    def exposure(self) -> tuple[int | None, float | None]:
        """(exposure µs, gain) for the camera: (None, None) for automatic."""
        screen = self.screen
        return (None, None) if screen.auto_exposure else (int(screen.exposure_us), float(screen.gain))

    # ---- bundle ------------------------------------------------------------------------------
    def show_bundle(self, status: BundleStatus) -> None:
        detail = str(status.path) if status.path else _("nothing installed")
        self.screen.bundle_detail = detail + (f"   {status.release}" if status.release else "") \
            + ("   " + _("signed by key {signer}").format(signer=status.signer) if status.signer else "")

    def choose_bundle_folder(self) -> None:
        FolderChooser(path=str(removable_media_root()), heading=_("Open the bundle folder (on the USB stick)"),
                      action=_("Install this bundle"), chosen=self.install_bundle, for_bundle=True).open()

    def install_bundle(self, folder: Path) -> None:
        """Check and install a bundle from `folder` on the worker; the old one stays in use
        if it is refused."""
        app = self.app
        if app.busy:
            self.screen.message = _(BUSY)
            return
        app.busy = True
        self._say(_("Checking and installing the bundle from {folder} ...").format(folder=folder))
        app.submit(partial(app.inspector.install, Path(folder)), self._bundle_installed)

    def _bundle_installed(self, status: BundleStatus | None, error: BaseException | None) -> None:
        app = self.app
        app.busy = False
        if error is not None:
            trouble = trouble_of(error)
            if trouble == Trouble.BUG:
                log.error("installing the bundle failed", exc_info=error)
            kept = (_("The previous bundle is still in use.") if app.bundle_status.ready
                    else _("No bundle is installed."))
            said = (_("Update refused: {cause}. {kept}") if trouble == Trouble.BUNDLE_REFUSED  # the bundle's fault
                    else _("Update failed: {cause}. {kept}"))  # the device's, or the stick's
            self._say(said.format(cause=error, kept=kept), COLOURS["counterfeit"][0])
            return
        assert status is not None  # Inspector.install returns one when it raises nothing
        app.bundle_opened(status, None)
        if status.ready:
            self._say(_("Installed: {bundle}.").format(bundle=status.describe()), OK_COLOUR)
        else:
            self._say(status.problem_text(), COLOURS["counterfeit"][0])

    # ---- label size --------------------------------------------------------------------------
    def set_label_px(self, text: str) -> None:
        """"auto" or the label side in px in the still. Saved, then the verifier takes it; bad
        input is refused with the reason, and nothing is saved."""
        app = self.app
        if app.busy:
            self.screen.message = _(BUSY)
            return
        try:
            value = parse_label_px(text, largest=STILL_SHORT_PX)
            app.save_settings(label_px=value)
        except PufError as error:
            self._say(_("Label size not changed: {cause}. Enter auto or the label's side in px.").format(
                cause=error), COLOURS["counterfeit"][0])
            return
        app.busy = True
        app.submit(app.inspector.refresh_limits, partial(self.label_px_applied, True))

    def label_px_applied(self, announce: bool, label_px: float | None, error: BaseException | None) -> None:
        """The label size the verifier took (`announce`: say so, as the inspector set it)."""
        if announce:
            self.app.busy = False
        if error is not None:
            log.error("applying the label size failed", exc_info=error)
            return
        self.app.label_px = label_px
        if announce:
            self._say(_("Label size in use: {size}.").format(size=self.screen.label_size_text), OK_COLOUR)

    def _label_px_shown(self, _app, label_px: float | None) -> None:
        self.screen.label_size_text = self._label_size(label_px)

    @staticmethod
    def _label_size(label_px: float | None) -> str:
        return _(AUTO_LABEL_SIZE) if label_px is None else f"{label_px:g} px"

    # ---- camera ------------------------------------------------------------------------------
    def _camera_listed(self, _app, spec: str) -> None:
        self.screen.camera_choices = CAMERAS if spec in CAMERAS else [spec, *CAMERAS]

    def choose_camera(self, spec: str) -> None:
        if spec != self.app.camera_spec:
            self.app.open_camera(spec)
            self.app.save_settings(camera=spec)

    def choose_photo_folder(self) -> None:
        FolderChooser(path=str(removable_media_root()), heading=_("Open a folder of photos to check"),
                      action=_("Use these photos"), chosen=lambda folder: self.choose_camera(f"file:{folder}")).open()

    def exposure_changed(self, auto: bool | None = None, log_us: float | None = None,
                         gain: float | None = None) -> None:
        """From the screen's controls (also called when a slider is first placed: then nothing
        changes and nothing is applied or saved)."""
        screen = self.screen
        before = (screen.auto_exposure, screen.exposure_us, screen.gain)
        if auto is not None:
            screen.auto_exposure = auto
        if log_us is not None:
            screen.exposure_us = int(round(10 ** log_us, -1))
        if gain is not None:
            screen.gain = round(gain, 1)
        if (screen.auto_exposure, screen.exposure_us, screen.gain) != before:
            self._apply_exposure()

    def _set_exposure(self, *_) -> None:
        exposure_us, gain = self.exposure()
        if self.app.source is not None:
            self.app.source.set_exposure(exposure_us, gain)
        self.app.save_settings(exposure_us=exposure_us, gain=gain)

    # ---- language ----------------------------------------------------------------------------
    def choose_language(self, name: str) -> None:
        """A language by its own name. Saved for the next start."""
        code = next(code for code, known in languages().items() if known == name)
        if code != self.app.language:
            self.app.language = code
            self.app.save_settings(language=code)
            self._say(_("Language: {name}.").format(name=name), OK_COLOUR)
