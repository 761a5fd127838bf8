"""The Kivy app: `PufApp` wires four screens, each a controller with its own kv layout
(`preview`, `verdict`, `history`, `settings`; the widgets they share in `puf.kv`, which
Kivy loads as the app's own), to what they share: the worker, the camera, the bundle's
status and the language.

The UI thread shows things and talks to the camera; verification, the journal and bundle
updates run on the worker thread (`edge_app.app.worker`), whose results come back through
`Clock.schedule_once`. Import this module only after `launch.configure_kivy`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.app import App
from kivy.clock import Clock
from kivy.event import Observable
from kivy.lang import Builder
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import NoTransition, Screen, ScreenManager

from edge_app.app.history import HistoryController
from edge_app.app.i18n import N_, _, default_language, languages, set_language
from edge_app.app.inspection import NOT_OPENED, BundleStatus, Inspector
from edge_app.app.preview import PREVIEW_FPS, PreviewController, camera_failed
from edge_app.app.settings import SettingsController
from edge_app.app.verdict import VerdictController
from edge_app.app.worker import Done, Worker
from edge_app.camera import open_camera

if TYPE_CHECKING:
    from edge_app.camera.base import FrameSource

log = logging.getLogger(__name__)

SCREEN_LAYOUTS = ("preview.kv", "verdict.kv", "history.kv", "settings.kv")  # beside this module


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


class PufApp(App):
    title = N_("PUF label check")
    busy = BooleanProperty(False)  # a verification or bundle update is running
    ready = BooleanProperty(False)  # a bundle to verify with and a camera
    notice = StringProperty("")  # why capture is not possible, in words
    bundle_status = ObjectProperty(BundleStatus(None, problem=NOT_OPENED))
    bundle_text = StringProperty("")
    camera_spec = StringProperty("")
    camera_text = StringProperty("")
    label_px = ObjectProperty(None, allownone=True)  # the label side verify expects (px); None: found in each photo
    language = StringProperty("")  # the language the app is shown in (`edge_app.app.i18n`): set when it starts

    def __init__(self, options, store, **kwargs) -> None:
        super().__init__(**kwargs)
        self.options = options
        self.store = store
        self.inspector = Inspector(store, options.bundle, options.trusted_keys)
        self.worker: Worker | None = None  # made when the app starts
        self.source: FrameSource | None = None
        self.camera_problem: tuple[str, str] | None = None  # why the camera cannot be used: (catalogue string, cause)
        self.tr = Translator()  # the kv rules' `_`, made before the kv is read
        saved = store.load_settings().get("language")  # a language the app no longer has counts as none
        self.language = options.language or (saved if saved in languages() else None) or default_language()
        self.notice = _("Opening the bundle...")

    def build(self) -> ScreenManager:
        """The screens, each with its controller (`puf.kv`, read by Kivy before this, holds
        the widgets they share)."""
        for name in SCREEN_LAYOUTS:
            Builder.load_file(str(Path(__file__).with_name(name)))
        self.preview = PreviewController(self)
        self.verdict = VerdictController(self)
        self.history = HistoryController(self)
        self.settings = SettingsController(self)
        manager = ScreenManager(transition=NoTransition())
        for controller in (self.preview, self.verdict, self.history, self.settings):
            manager.add_widget(controller.screen)
        return manager

    # ---- start and stop --------------------------------------------------------------------
    def on_start(self) -> None:
        saved = self.store.load_settings()
        self.settings.load(saved, self.options)
        self.worker = Worker(lambda callback: Clock.schedule_once(lambda _dt: callback()))
        self.worker.submit(lambda: self.inspector.journal, self._journal_opened)  # and the device key, made now
        self.worker.submit(self.inspector.open, self.bundle_opened)
        self.worker.submit(self.inspector.refresh_limits, partial(self.settings.label_px_applied, False))
        self.open_camera(self.options.camera or saved.get("camera") or "opencv:0")
        Clock.schedule_interval(self.preview.tick, 1 / PREVIEW_FPS)

    def on_stop(self) -> None:
        if self.worker is not None:
            self.worker.submit(self.inspector.close)
            self.worker.stop()
        if self.source is not None:
            self.source.close()

    def submit(self, job: Callable[[], Any], done: Done) -> None:
        """`job` on the worker, then `done(result, error)` on the UI thread."""
        if self.worker is None:
            raise RuntimeError("the app has not started: it has no worker yet")
        self.worker.submit(job, done)

    def save_settings(self, **changed) -> None:
        """Keep what the inspector changed for the next start (options given to `puf app`
        are for one run, and are not saved unless changed here)."""
        settings = self.store.load_settings()
        settings.update(changed)
        self.store.save_settings(settings)

    # ---- screens and language ----------------------------------------------------------------
    def screen(self, name: str) -> Screen:
        return self.root.get_screen(name)

    def show(self, name: str) -> None:
        self.root.current = name
        if name == "history":
            self.history.refresh()
        elif name == "settings":
            self.screen("settings").message = ""

    def on_language(self, _app, language: str) -> None:
        """Show everything in `language`: the kv texts re-draw themselves (`Translator`);
        what was put together in Python is put together again."""
        self.tr.switch(language)
        self.title = _(type(self).title)
        if self.root is None:  # still starting: nothing else shown yet
            return
        self._show_bundle()
        self._show_camera()
        self._update_ready()
        for controller in (self.settings, self.preview, self.verdict, self.history):
            controller.redraw()

    # ---- bundle ------------------------------------------------------------------------------
    def _journal_opened(self, _journal: object, error: BaseException | None) -> None:
        if error is not None:  # each check then says so when it is recorded
            log.error("opening the journal failed", exc_info=error)

    def bundle_opened(self, status: BundleStatus | None, error: BaseException | None) -> None:
        if error is not None:
            log.error("opening the bundle failed", exc_info=error)
            status = BundleStatus(None, problem=N_("The bundle could not be opened: {cause}"), cause=str(error))
        self.bundle_status = status
        self._show_bundle()
        self._update_ready()

    def _show_bundle(self) -> None:
        status = self.bundle_status
        self.bundle_text = status.describe() if status.ready else _("no usable bundle")
        self.preview.show_bundle(status)
        self.settings.show_bundle(status)

    # ---- camera ------------------------------------------------------------------------------
    def open_camera(self, spec: str) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        self.camera_spec = spec
        try:
            exposure_us, gain = self.settings.exposure()
            self.source = open_camera(spec, exposure_us=exposure_us, gain=gain)
        except Exception as error:  # a camera that fails must not stop the app: say so (traceback logged)
            camera_failed(error)
            self.camera_problem = (N_("The camera cannot be used: {cause}. Choose another one in Settings."),
                                   str(error))
        else:
            self.camera_problem = None
        self._show_camera()
        self._update_ready()

    def camera_stopped(self, problem: str, error: BaseException) -> None:
        """The camera failed while in use: closed, and `problem` (a catalogue string) says so."""
        if self.source is not None:
            self.source.close()
            self.source = None
        self.camera_problem = (problem, str(error))
        self._show_camera()
        self._update_ready()

    def _show_camera(self) -> None:
        self.camera_text = (self.source.name if self.source is not None
                            else _("no camera ({spec})").format(spec=self.camera_spec))

    def _update_ready(self) -> None:
        status = self.bundle_status
        camera = _(self.camera_problem[0]).format(cause=self.camera_problem[1]) if self.camera_problem else ""
        self.notice = status.problem_text() if not status.ready else camera
        self.ready = status.ready and self.source is not None
