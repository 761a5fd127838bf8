"""The preview screen (`preview.kv`): the camera's live picture with the guide box, the focus
and light indicators, and CAPTURE, which takes a still and has it verified on the worker."""

from __future__ import annotations

import logging
from functools import cached_property, partial
from time import perf_counter
from typing import TYPE_CHECKING

from kivy.graphics.texture import Texture
from kivy.properties import ColorProperty, ListProperty, StringProperty
from kivy.uix.image import Image
from kivy.uix.screenmanager import Screen

from edge_app.app.i18n import N_, _
from edge_app.app.inspection import CAMERA_STOPPED, PHOTO_UNUSABLE, BundleStatus, Outcome, Trouble, trouble_of
from edge_app.app.widgets import IDLE_COLOUR, OK_COLOUR, WARN_COLOUR, to_texture
from edge_app.camera import assess, guide_box
from edge_app.errors import PufError

if TYPE_CHECKING:
    from edge_app.app.puf_app import PufApp

log = logging.getLogger(__name__)

PREVIEW_FPS = 15
PREVIEW_WIDTH = 640
LIGHT = {"ok": N_("OK"), "dark": N_("Too dark"), "bright": N_("Too bright")}  # the preview's light indicator


def camera_failed(error: BaseException) -> None:
    """Log a camera's failure; an unexpected one (not a PufError) with its traceback."""
    if isinstance(error, PufError):
        log.warning("camera: %s", error)
    else:
        log.error("camera failed", exc_info=error)


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


class PreviewScreen(Screen):
    focus_text = StringProperty("-")
    focus_colour = ColorProperty(IDLE_COLOUR)
    light_text = StringProperty("-")
    light_colour = ColorProperty(IDLE_COLOUR)
    hint = StringProperty("")
    bundle_lines = StringProperty("")  # two short lines: labels, version


class PreviewController:
    """Draws the camera's frames with what the capture assist says of them, and sends a
    still to the inspector when CAPTURE is pressed."""

    def __init__(self, app: PufApp) -> None:
        self.app = app
        self.ticks = 0  # preview frames shown
        self.assist = None  # the capture assist of the last preview frame
        self.problem: str | None = None  # why the last capture gave no verdict: shown until the next one
        self._texture: Texture | None = None

    @cached_property
    def screen(self) -> PreviewScreen:
        return PreviewScreen(name="preview")

    def redraw(self) -> None:
        """Show again in the language in use."""
        if self.assist is not None:
            self._show_assist(self.assist)

    def show_bundle(self, status: BundleStatus) -> None:
        self.screen.bundle_lines = (_("{labels:,} labels enrolled").format(labels=status.labels)
                                    + f"\n{status.version}" if status.ready else self.app.bundle_text)

    def tick(self, _dt: float) -> None:
        """One preview frame (scheduled PREVIEW_FPS times a second), while this screen shows."""
        app, screen = self.app, self.screen
        if app.source is None or app.root.current != "preview":
            return
        try:
            image = app.source.preview_frame(PREVIEW_WIDTH)
        except Exception as error:
            if trouble_of(error) == Trouble.CAPTURE_UNUSABLE:  # this frame only: the camera stays
                self._say(_(PHOTO_UNUSABLE).format(cause=error))
                return
            camera_failed(error)
            app.camera_stopped(CAMERA_STOPPED, error)
            self.assist = None
            screen.focus_text = screen.light_text = "-"
            screen.focus_colour = screen.light_colour = IDLE_COLOUR
            return
        height, width = image.shape[:2]
        box = guide_box(width, height, app.label_px)
        assist = assess(image, box)
        view = screen.ids.live
        self._texture = to_texture(image, self._texture)
        view.texture = self._texture
        view.canvas.ask_update()
        view.guide = list(box)
        view.guide_colour = OK_COLOUR if assist.ready else (1, 1, 1, 0.85)
        self._show_assist(assist)
        self.ticks += 1

    def _show_assist(self, assist) -> None:
        self.assist = assist
        screen = self.screen
        screen.focus_text = _("Sharp") if assist.sharp else _("Blurred")
        screen.focus_colour = OK_COLOUR if assist.sharp else WARN_COLOUR
        screen.light_text = _(LIGHT[assist.exposure_state])
        screen.light_colour = OK_COLOUR if assist.exposure_state == "ok" else WARN_COLOUR
        screen.hint = self.problem or _(assist.hint)

    def _say(self, problem: str) -> None:
        """Why a capture gave no verdict, in the hint's place until the next capture."""
        self.problem = self.screen.hint = problem

    def capture(self) -> None:
        """Take a still and verify it on the worker; the preview keeps running meanwhile."""
        app, source = self.app, self.app.source
        if app.busy or not app.ready or source is None:  # ready: a bundle and a camera
            return
        pressed = perf_counter()
        self.problem = None
        try:
            frame = source.capture()
        except Exception as error:
            trouble = trouble_of(error)
            if trouble == Trouble.HARDWARE_STOPPED:  # closed: it must be chosen again
                camera_failed(error)
                app.camera_stopped(CAMERA_STOPPED, error)
            elif trouble == Trouble.CAPTURE_UNUSABLE:  # this photo only: the camera stays
                log.warning("capture: %s", error)
                self._say(_(PHOTO_UNUSABLE).format(cause=error))
            else:
                camera_failed(error)
                self._say(_("The capture failed: {cause}").format(cause=error))
            return
        app.busy = True
        app.submit(partial(app.inspector.inspect, frame), partial(self._checked, pressed))

    def _checked(self, pressed: float, outcome: Outcome | None, error: BaseException | None) -> None:
        self.app.busy = False
        if error is not None:
            trouble = trouble_of(error)
            if trouble == Trouble.CAPTURE_UNUSABLE:
                log.warning("the check: %s", error)
                self._say(_(PHOTO_UNUSABLE).format(cause=error))
                return
            log.error("the check failed", exc_info=error if trouble == Trouble.BUG else None)
            self._say(_("The check failed: {cause}").format(cause=error))
            return
        assert outcome is not None  # Inspector.inspect returns one when it raises nothing
        self.app.verdict.arrive(outcome, pressed)
