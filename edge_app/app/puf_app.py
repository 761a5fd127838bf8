"""The Kivy app: an `App` subclass whose layout is `puf.kv` (a ScreenManager of four
screens: preview, verdict, history, settings).

The UI thread shows things and talks to the camera; verification, the journal and bundle
updates run on the worker thread (`edge_app.app.worker`), whose results come back through
`Clock.schedule_once`. Import this module only after `launch.configure_kivy`.
"""

from __future__ import annotations

import getpass
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.event import Observable
from kivy.graphics.texture import Texture
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.image import Image
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen

from edge_app.app.i18n import N_, _, default_language, languages, set_language
from edge_app.app.inspection import NOT_OPENED, TITLES, BundleStatus, Inspector, Outcome
from edge_app.app.worker import Done, Worker
from edge_app.camera import assess, guide_box, open_camera
from edge_app.camera.base import STILL_SHORT_PX
from edge_app.errors import PufError
from edge_app.label_size import parse_label_px

if TYPE_CHECKING:
    from edge_app.camera.base import FrameSource

log = logging.getLogger(__name__)

PREVIEW_FPS = 15
PREVIEW_WIDTH = 640
EXPOSURE_US = (100, 200_000)  # the manual exposure slider's range, microseconds (log scale)
GAIN = (1.0, 16.0)
COLOURS = {  # verdict -> (background, text)
    "genuine": ((0.11, 0.56, 0.24, 1), (1, 1, 1, 1)),
    "counterfeit": ((0.78, 0.15, 0.15, 1), (1, 1, 1, 1)),
    "revoked": ((0.45, 0.09, 0.42, 1), (1, 1, 1, 1)),
    "unreadable": ((0.98, 0.68, 0.13, 1), (0.1, 0.1, 0.1, 1)),
}
NO_ID = (N_("not read"), N_("no match"))  # what stands for the label id of a retake, a counterfeit
AUTO_LABEL_SIZE = N_("auto: found in each photo")
LIGHT = {"ok": N_("OK"), "dark": N_("Too dark"), "bright": N_("Too bright")}  # the preview's light indicator
BUSY = N_("Busy: try again when the check has finished.")
OK_COLOUR, WARN_COLOUR, IDLE_COLOUR = (0.20, 0.75, 0.35, 1), (0.98, 0.68, 0.13, 1), (0.55, 0.58, 0.62, 1)


def to_texture(image: np.ndarray, texture: Texture | None = None) -> Texture:
    """A BGR or grey uint8 image in a texture (reused when its size matches, as for a
    camera stream: one upload a frame, no new GL object)."""
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    if texture is None or tuple(texture.size) != (width, height):
        texture = Texture.create(size=(width, height), colorfmt="rgb")
        texture.flip_vertical()  # image rows go top-down, GL's bottom-up
    texture.blit_buffer(np.ascontiguousarray(rgb).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    return texture


def camera_failed(error: BaseException) -> None:
    """Log a camera's failure; an unexpected one (not a PufError) with its traceback."""
    if isinstance(error, PufError):
        log.warning("camera: %s", error)
    else:
        log.error("camera failed", exc_info=error)


def local_time(iso: str, now: datetime | None = None) -> str:
    """A journal time (ISO 8601, UTC) as the inspector reads it: local time, the date only
    when it is not today."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    now = now or datetime.now(UTC).astimezone()
    return moment.strftime("%H:%M:%S" if moment.date() == now.date() else "%d %b %H:%M")


class Translator(Observable):
    """`_()` for the kv rules, which re-draws them when the language changes: a rule such
    as ``text: app.tr._('Back')`` binds to the attribute ``_`` as to a property, and
    `switch` calls every such binding again (Kivy's usual pattern for gettext)."""

    def __init__(self) -> None:
        super().__init__()
        self._observers: dict[int, tuple] = {}
        self._uids = 0

    def _(self, text: str) -> str:
        return _(text)

    def fbind(self, name: str, func, *largs, **kwargs):
        if name != "_":
            return super().fbind(name, func, *largs, **kwargs)
        self._uids += 1
        self._observers[self._uids] = (func, largs, kwargs)
        return self._uids

    def funbind(self, name: str, func, *largs, **kwargs):
        if name != "_":
            return super().funbind(name, func, *largs, **kwargs)
        for uid, observer in list(self._observers.items()):
            if observer == (func, largs, kwargs):
                del self._observers[uid]
                break

    def unbind_uid(self, name: str, uid: int):
        if name != "_":
            return super().unbind_uid(name, uid)
        self._observers.pop(uid, None)

    def switch(self, language: str) -> None:
        """Show `language` from now on, and re-draw every kv text that uses `_`."""
        set_language(language)
        for uid, (func, largs, kwargs) in list(self._observers.items()):
            try:
                func(*largs, self, None, **kwargs)
            except ReferenceError:  # its widget is gone
                del self._observers[uid]


class LivePreview(Image):
    """The camera's preview with the guide box drawn over it."""

    guide = ListProperty([0, 0, 0, 0])  # x, y, w, h in frame pixels, top-left origin
    guide_rect = ListProperty([0, 0, 0, 0])  # the same in window coordinates
    guide_colour = ColorProperty((1, 1, 1, 0.9))

    def on_guide(self, *_) -> None:
        self._place_guide()

    def on_size(self, *_) -> None:
        self._place_guide()

    def on_pos(self, *_) -> None:
        self._place_guide()

    def _place_guide(self) -> None:
        if self.texture is None or not any(self.guide):
            self.guide_rect = [0, 0, 0, 0]
            return
        tw, th = self.texture.size
        shown_w, shown_h = self.norm_image_size
        scale = shown_w / tw
        left = self.center_x - shown_w / 2
        top = self.center_y + shown_h / 2
        x, y, w, h = self.guide
        self.guide_rect = [left + x * scale, top - (y + h) * scale, w * scale, h * scale]


class TouchButton(Button):
    tint = ColorProperty((0.12, 0.44, 0.86, 1))


class Pill(Label):
    tint = ColorProperty((0.24, 0.27, 0.31, 1))


class Indicator(BoxLayout):
    name = StringProperty("")
    state_text = StringProperty("")
    tint = ColorProperty((0.24, 0.27, 0.31, 1))


class PreviewScreen(Screen):
    pass


class VerdictScreen(Screen):
    banner = ColorProperty(COLOURS["genuine"][0])
    ink = ColorProperty(COLOURS["genuine"][1])
    paired = BooleanProperty(True)  # the enrolled label's picture beside the captured one (genuine)

    def on_kv_post(self, _base) -> None:
        self._enrolled_box = self.ids.enrolled_box  # kept while out of the layout

    def on_paired(self, _screen, paired: bool) -> None:
        box, pictures = self._enrolled_box, self.ids.pictures
        if paired and box.parent is None:
            pictures.add_widget(box)
        elif not paired and box.parent is not None:
            pictures.remove_widget(box)

    def show(self, outcome: Outcome, on_screen_ms: float | None = None) -> None:
        """Lay out a verdict (again, in the language in use, when it changes); `on_screen_ms`:
        the time from CAPTURE to this verdict drawn, once it is known."""
        ids = self.ids
        self.banner, self.ink = COLOURS[outcome.kind]
        ids.title.text = outcome.title
        ids.message.text = outcome.message
        ids.label_id.text = outcome.label_id or (_("no enrolled label matches") if outcome.kind == "counterfeit"
                                                 else _("not read"))
        ids.score.text = (_("not measured") if outcome.score is None
                          else _("{score:.3f}  (pass >= {threshold:.3f})").format(score=outcome.score,
                                                                                   threshold=outcome.threshold))
        ids.found.text = outcome.summary or (_("no label found") if not outcome.labels else _("1 label in the photo"))
        ids.detail.text = "" if outcome.kind == "genuine" else outcome.detail
        ids.timing.text = (_("verified in {verify:.0f} ms") if on_screen_ms is None
                           else _("on screen {shown:.0f} ms after capture (verify {verify:.0f} ms)")).format(
            verify=outcome.verify_ms, shown=on_screen_ms)
        ids.crop.texture = to_texture(outcome.crop) if outcome.crop is not None else None
        ids.crop_caption.text = _("Captured label") if outcome.labels else _("Captured photo")
        self.paired = outcome.kind == "genuine"
        ids.enrolled.texture = to_texture(outcome.thumbnail) if outcome.thumbnail is not None else None
        ids.enrolled_caption.text = _("Enrolled label") if outcome.thumbnail is not None else ""


class HistoryRow(ButtonBehavior, BoxLayout):
    entry_id = NumericProperty(0)
    title = StringProperty("")
    tint = ColorProperty((0, 0, 0, 1))
    ink = ColorProperty((1, 1, 1, 1))
    label_id = StringProperty("")
    identified = BooleanProperty(True)  # label_id is an id, not words standing for none
    score = StringProperty("")
    when = StringProperty("")


class HistoryScreen(Screen):
    empty = BooleanProperty(True)


class SettingsScreen(Screen):
    message = StringProperty("")
    message_colour = ColorProperty((1, 1, 1, 1))


class EntryView(ModalView):
    """One journal row, tapped in the history: its crop and what was decided."""

    title = StringProperty("")
    tint = ColorProperty((0, 0, 0, 1))
    ink = ColorProperty((1, 1, 1, 1))
    lines = StringProperty("")


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


def removable_media_root() -> Path:
    """Where a USB stick shows up: /media/USER (Raspberry Pi OS), /media, else home."""
    for path in (Path("/media") / getpass.getuser(), Path("/media"), Path("/mnt")):
        if path.is_dir() and any(path.iterdir()):
            return path
    return Path.home()


class PufApp(App):
    title = N_("PUF label check")
    busy = BooleanProperty(False)  # a verification or bundle update is running
    ready = BooleanProperty(False)  # a bundle to verify with and a camera
    notice = StringProperty("")  # why capture is not possible, in words
    bundle_text = StringProperty("")
    camera_text = StringProperty("")
    focus_text = StringProperty("-")
    focus_colour = ColorProperty(IDLE_COLOUR)
    light_text = StringProperty("-")
    light_colour = ColorProperty(IDLE_COLOUR)
    hint = StringProperty("")
    auto_exposure = BooleanProperty(True)
    exposure_us = NumericProperty(10_000)
    gain = NumericProperty(2.0)
    camera_spec = StringProperty("")
    camera_choices = ListProperty()
    bundle_detail = StringProperty("")
    bundle_lines = StringProperty("")  # the preview's two short lines: labels, version
    journal_text = StringProperty("")
    bundle_status = ObjectProperty(BundleStatus(None, problem=NOT_OPENED))
    label_px = ObjectProperty(None, allownone=True)  # the label side verify expects (px); None: found in each photo
    label_size_text = StringProperty(AUTO_LABEL_SIZE)
    language = StringProperty("")  # the language the app is shown in (`edge_app.app.i18n`): set when it starts
    language_name = StringProperty("English")
    language_choices = ListProperty()  # every language the app has, each by its own name

    def __init__(self, options, store, **kwargs) -> None:
        super().__init__(**kwargs)
        self.options = options
        self.store = store
        self.inspector = Inspector(store, options.bundle, options.trusted_keys)
        self.worker: Worker | None = None  # made when the app starts
        self.source: FrameSource | None = None
        self.outcome: Outcome | None = None
        self.capture_ms: list[float] = []  # press capture -> verdict drawn, every capture of this run
        self.ticks = 0  # preview frames shown
        self.history_entries: dict = {}
        self.history_loads = 0  # times the history was read from the journal
        self.camera_problem: tuple[str, str] | None = None  # why the camera cannot be used: (catalogue string, cause)
        self.assist = None  # the capture assist of the last preview frame
        self.on_screen_ms: float | None = None  # CAPTURE to the verdict shown, drawn
        self.entry_view: EntryView | None = None
        self._preview_texture: Texture | None = None
        self._apply_exposure = Clock.create_trigger(self._set_exposure, 0.4)
        self.tr = Translator()  # the kv rules' `_`, made before the kv is read
        self.language_choices = list(languages().values())
        saved = store.load_settings().get("language")  # a language the app no longer has counts as none
        self.language = options.language or (saved if saved in languages() else None) or default_language()
        self.notice = _("Opening the bundle...")

    # ---- start and stop --------------------------------------------------------------------
    def on_start(self) -> None:
        settings = self.store.load_settings()
        self.journal_text = str(self.store.journal_path)
        self.camera_spec = self.options.camera or settings.get("camera") or "opencv:0"
        exposure = self.options.exposure_us if self.options.exposure_us is not None else settings.get("exposure_us")
        gain = self.options.gain if self.options.gain is not None else settings.get("gain")
        self.auto_exposure = exposure is None and gain is None
        self.exposure_us = exposure or self.exposure_us
        self.gain = gain or self.gain
        self.worker = Worker(lambda callback: Clock.schedule_once(lambda _dt: callback()))
        self.worker.submit(lambda: self.inspector.journal, self._journal_opened)  # and the device key, made now
        self.worker.submit(self.inspector.open, self._bundle_opened)
        self.worker.submit(self.inspector.refresh_limits, partial(self._label_px_applied, False))
        self.open_camera(self.camera_spec)
        Clock.schedule_interval(self._preview, 1 / PREVIEW_FPS)

    def on_stop(self) -> None:
        if self.worker is not None:
            self.worker.submit(self.inspector.close)
            self.worker.stop()
        if self.source is not None:
            self.source.close()

    def _submit(self, job: Callable[[], Any], done: Done) -> None:
        """`job` on the worker, then `done(result, error)` on the UI thread."""
        if self.worker is None:
            raise RuntimeError("the app has not started: it has no worker yet")
        self.worker.submit(job, done)

    # ---- language ----------------------------------------------------------------------------
    def on_language(self, _app, language: str) -> None:
        """Show everything in `language`: the kv texts re-draw themselves (`Translator`);
        what was put together here is put together again."""
        self.tr.switch(language)
        self.language_name = languages()[language]
        self.title = _(type(self).title)
        self.on_label_px(self, self.label_px)
        if self.root is None:  # still starting: nothing else shown yet
            return
        self._show_bundle()
        self._show_camera()
        self._update_ready()
        if self.assist is not None:
            self._show_assist(self.assist)
        if self.outcome is not None:
            self.screen("verdict").show(self.outcome, self.on_screen_ms)
        self._show_history()

    def choose_language(self, name: str) -> None:
        """From the Settings screen: a language by its own name. Saved for the next start."""
        code = next(code for code, known in languages().items() if known == name)
        if code != self.language:
            self.language = code
            self._save_settings(language=code)
            settings = self.screen("settings")
            settings.message_colour = OK_COLOUR
            settings.message = _("Language: {name}.").format(name=name)

    def screen(self, name: str) -> Screen:
        return self.root.get_screen(name)

    def show(self, name: str) -> None:
        self.root.current = name
        if name == "history":
            self.refresh_history()
        elif name == "settings":
            self.screen("settings").message = ""

    # ---- bundle ------------------------------------------------------------------------------
    def _journal_opened(self, _journal: object, error: BaseException | None) -> None:
        if error is not None:  # each check then says so when it is recorded
            log.error("opening the journal failed", exc_info=error)

    def _bundle_opened(self, status: BundleStatus | None, error: BaseException | None) -> None:
        if error is not None:
            log.error("opening the bundle failed", exc_info=error)
            status = BundleStatus(None, problem=N_("The bundle could not be opened: {cause}"), cause=str(error))
        self.bundle_status = status
        self._show_bundle()
        self._update_ready()

    def _show_bundle(self) -> None:
        status = self.bundle_status
        self.bundle_text = status.describe() if status.ready else _("no usable bundle")
        self.bundle_lines = (_("{labels:,} labels enrolled").format(labels=status.labels) + f"\n{status.version}"
                             if status.ready else self.bundle_text)
        detail = str(status.path) if status.path else _("nothing installed")
        self.bundle_detail = detail + (f"   {status.release}" if status.release else "") \
            + ("   " + _("signed by key {signer}").format(signer=status.signer) if status.signer else "")

    def choose_bundle_folder(self) -> None:
        FolderChooser(path=str(removable_media_root()), heading=_("Open the bundle folder (on the USB stick)"),
                      action=_("Install this bundle"), chosen=self.install_bundle, for_bundle=True).open()

    def install_bundle(self, folder: Path) -> None:
        """Check and install a bundle from `folder` on the worker; the old one stays in use
        if it is refused."""
        settings = self.screen("settings")
        if self.busy:
            settings.message = _(BUSY)
            return
        self.busy = True
        settings.message_colour = (1, 1, 1, 1)
        settings.message = _("Checking and installing the bundle from {folder} ...").format(folder=folder)
        self._submit(partial(self.inspector.install, Path(folder)), self._bundle_installed)

    def _bundle_installed(self, status: BundleStatus | None, error: BaseException | None) -> None:
        self.busy = False
        settings = self.screen("settings")
        if error is not None:
            if not isinstance(error, PufError):
                log.error("installing the bundle failed", exc_info=error)
            settings.message_colour = COLOURS["counterfeit"][0]
            kept = (_("The previous bundle is still in use.") if self.bundle_status.ready
                    else _("No bundle is installed."))
            settings.message = _("Update refused: {cause}. {kept}").format(cause=error, kept=kept)
            return
        assert status is not None  # Inspector.install returns one when it raises nothing
        self._bundle_opened(status, None)
        if status.ready:
            settings.message_colour = OK_COLOUR
            settings.message = _("Installed: {bundle}.").format(bundle=status.describe())
        else:
            settings.message_colour = COLOURS["counterfeit"][0]
            settings.message = status.problem_text()

    # ---- label size --------------------------------------------------------------------------
    def set_label_px(self, text: str) -> None:
        """From the Settings screen: "auto" or the label side in px in the still. Saved, then
        the verifier takes it; bad input is refused with the reason, and nothing is saved."""
        settings = self.screen("settings")
        if self.busy:
            settings.message = _(BUSY)
            return
        try:
            value = parse_label_px(text, largest=STILL_SHORT_PX)
            self._save_settings(label_px=value)
        except PufError as error:
            settings.message_colour = COLOURS["counterfeit"][0]
            settings.message = _("Label size not changed: {cause}. Enter auto or the label's side in px.").format(
                cause=error)
            return
        self.busy = True
        self._submit(self.inspector.refresh_limits, partial(self._label_px_applied, True))

    def _label_px_applied(self, announce: bool, label_px: float | None, error: BaseException | None) -> None:
        if announce:
            self.busy = False
        if error is not None:
            log.error("applying the label size failed", exc_info=error)
            return
        self.label_px = label_px
        if announce:
            settings = self.screen("settings")
            settings.message_colour = OK_COLOUR
            settings.message = _("Label size in use: {size}.").format(size=self.label_size_text)

    def on_label_px(self, _app, label_px: float | None) -> None:
        self.label_size_text = _(AUTO_LABEL_SIZE) if label_px is None else f"{label_px:g} px"

    # ---- camera ------------------------------------------------------------------------------
    def open_camera(self, spec: str) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        self.camera_spec = spec
        try:
            exposure = (None, None) if self.auto_exposure else (int(self.exposure_us), float(self.gain))
            self.source = open_camera(spec, exposure_us=exposure[0], gain=exposure[1])
        except Exception as error:  # a camera that fails must not stop the app: say so (traceback logged)
            camera_failed(error)
            self.camera_problem = (N_("The camera cannot be used: {cause}. Choose another one in Settings."),
                                   str(error))
        else:
            self.camera_problem = None
        self._show_camera()
        self._update_ready()

    def _show_camera(self) -> None:
        self.camera_text = (self.source.name if self.source is not None
                            else _("no camera ({spec})").format(spec=self.camera_spec))

    def choose_camera(self, spec: str) -> None:
        if spec != self.camera_spec:
            self.open_camera(spec)
            self._save_settings(camera=spec)

    def choose_photo_folder(self) -> None:
        FolderChooser(path=str(removable_media_root()), heading=_("Open a folder of photos to check"),
                      action=_("Use these photos"), chosen=lambda folder: self.choose_camera(f"file:{folder}")).open()

    def on_camera_spec(self, _app, spec: str) -> None:
        choices = ["picamera2", "opencv:0", "opencv:1"]
        self.camera_choices = choices if spec in choices else [spec, *choices]

    def exposure_changed(self, auto: bool | None = None, log_us: float | None = None,
                         gain: float | None = None) -> None:
        """From the Settings screen (also called when a slider is first placed: then nothing
        changes and nothing is applied or saved)."""
        before = (self.auto_exposure, self.exposure_us, self.gain)
        if auto is not None:
            self.auto_exposure = auto
        if log_us is not None:
            self.exposure_us = int(round(10 ** log_us, -1))
        if gain is not None:
            self.gain = round(gain, 1)
        if (self.auto_exposure, self.exposure_us, self.gain) != before:
            self._apply_exposure()

    def _set_exposure(self, *_) -> None:
        if self.source is not None:
            if self.auto_exposure:
                self.source.set_exposure(None, None)
            else:
                self.source.set_exposure(int(self.exposure_us), float(self.gain))
        self._save_settings(exposure_us=None if self.auto_exposure else int(self.exposure_us),
                            gain=None if self.auto_exposure else float(self.gain))

    def _save_settings(self, **changed) -> None:
        """Keep what the inspector changed for the next start (options given to `puf app`
        are for one run, and are not saved unless changed here)."""
        settings = self.store.load_settings()
        settings.update(changed)
        self.store.save_settings(settings)

    def _update_ready(self) -> None:
        status = self.bundle_status
        camera = _(self.camera_problem[0]).format(cause=self.camera_problem[1]) if self.camera_problem else ""
        self.notice = status.problem_text() if not status.ready else camera
        self.ready = status.ready and self.source is not None

    def _preview(self, _dt: float) -> None:
        if self.source is None or self.root.current != "preview":
            return
        try:
            image = self.source.preview_frame(PREVIEW_WIDTH)
        except Exception as error:
            camera_failed(error)
            self.source.close()
            self.source = None
            self.camera_problem = (N_("The camera stopped: {cause}. Choose it again in Settings."), str(error))
            self._show_camera()
            self._update_ready()
            self.assist = None
            self.focus_text = self.light_text = "-"
            self.focus_colour = self.light_colour = IDLE_COLOUR
            return
        height, width = image.shape[:2]
        box = guide_box(width, height, self.label_px)
        assist = assess(image, box)
        view = self.screen("preview").ids.live
        self._preview_texture = to_texture(image, self._preview_texture)
        view.texture = self._preview_texture
        view.canvas.ask_update()
        view.guide = list(box)
        view.guide_colour = OK_COLOUR if assist.ready else (1, 1, 1, 0.85)
        self._show_assist(assist)
        self.ticks += 1

    def _show_assist(self, assist) -> None:
        self.assist = assist
        self.focus_text = _("Sharp") if assist.sharp else _("Blurred")
        self.focus_colour = OK_COLOUR if assist.sharp else WARN_COLOUR
        self.light_text = _(LIGHT[assist.exposure_state])
        self.light_colour = OK_COLOUR if assist.exposure_state == "ok" else WARN_COLOUR
        self.hint = _(assist.hint)

    # ---- capture and verdict ------------------------------------------------------------------
    def capture(self) -> None:
        """Take a still and verify it on the worker; the preview keeps running meanwhile."""
        source = self.source
        if self.busy or not self.ready or source is None:  # ready: a bundle and a camera
            return
        pressed = perf_counter()
        try:
            frame = source.capture()
        except Exception as error:
            camera_failed(error)
            self.hint = _("The capture failed: {cause}").format(cause=error)
            return
        self.busy = True
        self._submit(partial(self.inspector.inspect, frame), partial(self._verdict, pressed))

    def _verdict(self, pressed: float, outcome: Outcome | None, error: BaseException | None) -> None:
        self.busy = False
        if error is not None:
            log.error("the check failed", exc_info=error)
            self.hint = _("The check failed: {cause}").format(cause=error)
            return
        self.outcome, self.on_screen_ms = outcome, None
        self.screen("verdict").show(outcome)
        self.root.current = "verdict"

        def drawn(*_) -> None:  # the first frame drawn with the verdict on it
            Window.funbind("on_flip", drawn)
            self.on_screen_ms = (perf_counter() - pressed) * 1000
            self.capture_ms.append(self.on_screen_ms)
            self.screen("verdict").show(outcome, self.on_screen_ms)

        Window.fbind("on_flip", drawn)

    # ---- history -----------------------------------------------------------------------------
    def refresh_history(self) -> None:
        self._submit(self.inspector.history, self._history)

    def _history(self, entries: list | None, error: BaseException | None) -> None:
        if error is not None:
            log.error("reading the journal failed", exc_info=error)
        self.history_entries = {entry.id: entry for entry in entries or []}
        self.history_loads += 1
        self._show_history()

    def _show_history(self) -> None:
        rows = []
        for entry in self.history_entries.values():
            tint, ink = COLOURS.get(entry.verdict, COLOURS["unreadable"])
            rows.append({"entry_id": entry.id, "title": verdict_title(entry.verdict), "tint": tint, "ink": ink,
                         "label_id": entry.label_id or _(NO_ID[entry.verdict == "counterfeit"]),
                         "identified": entry.label_id is not None,
                         "score": "" if entry.score is None else f"{entry.score:.3f}", "when": local_time(entry.time)})
        screen = self.screen("history")
        screen.ids.rows.data = rows
        screen.empty = not rows

    def show_entry(self, entry_id: int) -> None:
        if entry_id in self.history_entries:
            self._submit(partial(self.inspector.crop, entry_id), partial(self._entry, entry_id))

    def _entry(self, entry_id: int, crop: np.ndarray | None, error: BaseException | None) -> None:
        entry = self.history_entries[entry_id]
        tint, ink = COLOURS.get(entry.verdict, COLOURS["unreadable"])
        lines = [f"[b]{entry.label_id or _('no label id')}[/b]", local_time(entry.time)]
        if entry.score is not None:
            lines.append(_("score {score:.3f} (pass >= {threshold:.3f})").format(score=entry.score,
                                                                                threshold=entry.threshold))
        if entry.verdict != "genuine" and entry.reason:
            lines.append(entry.reason)
        self.entry_view = EntryView(title=verdict_title(entry.verdict), tint=tint, ink=ink, lines="\n".join(lines))
        if crop is not None:
            self.entry_view.ids.crop.texture = to_texture(crop)
        self.entry_view.open()


def verdict_title(verdict: str) -> str:
    """GENUINE | COUNTERFEIT | REVOKED | RETAKE in the language in use (a verdict the app does not
    know, from a newer journal, in capitals)."""
    return _(TITLES[verdict]) if verdict in TITLES else verdict.upper()


def exposure_slider(value_us: float) -> float:
    """The exposure slider's position (log10 of microseconds) for an exposure time."""
    low, high = EXPOSURE_US
    return math.log10(min(max(value_us, low), high))
