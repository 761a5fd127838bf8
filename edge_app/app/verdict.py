"""The verdict screen (`verdict.kv`): what the check of a capture decided, in the verdict's
colour, with the captured label beside the enrolled one's picture."""

from __future__ import annotations

from functools import cached_property
from time import perf_counter
from typing import TYPE_CHECKING

from kivy.core.window import Window
from kivy.properties import BooleanProperty, ColorProperty
from kivy.uix.screenmanager import Screen

from edge_app.app.i18n import _
from edge_app.app.inspection import Outcome
from edge_app.app.widgets import COLOURS, to_texture

if TYPE_CHECKING:
    from edge_app.app.puf_app import PufApp


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


class VerdictController:
    """Lays out the last verdict, and times each capture to its verdict drawn."""

    def __init__(self, app: PufApp) -> None:
        self.app = app
        self.outcome: Outcome | None = None
        self.on_screen_ms: float | None = None  # CAPTURE to the verdict shown, drawn
        self.capture_ms: list[float] = []  # press capture -> verdict drawn, every capture of this run

    @cached_property
    def screen(self) -> VerdictScreen:
        return VerdictScreen(name="verdict")

    def redraw(self) -> None:
        """Show again in the language in use."""
        if self.outcome is not None:
            self.show(self.outcome, self.on_screen_ms)

    def arrive(self, outcome: Outcome, pressed: float) -> None:
        """A capture's verdict (CAPTURE pressed at `pressed`, perf_counter): shown now, and
        shown again with its time once the first frame with it is drawn."""
        self.outcome, self.on_screen_ms = outcome, None
        self.show(outcome)
        self.app.root.current = "verdict"

        def drawn(*_) -> None:  # the first frame drawn with the verdict on it
            Window.funbind("on_flip", drawn)
            self.on_screen_ms = (perf_counter() - pressed) * 1000
            self.capture_ms.append(self.on_screen_ms)
            self.show(outcome, self.on_screen_ms)

        Window.fbind("on_flip", drawn)

    def show(self, outcome: Outcome, on_screen_ms: float | None = None) -> None:
        """Lay out a verdict (again, in the language in use, when it changes); `on_screen_ms`:
        the time from CAPTURE to this verdict drawn, once it is known."""
        screen = self.screen
        ids = screen.ids
        screen.banner, screen.ink = COLOURS[outcome.kind]
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
        screen.paired = outcome.kind == "genuine"
        ids.enrolled.texture = to_texture(outcome.thumbnail) if outcome.thumbnail is not None else None
        ids.enrolled_caption.text = _("Enrolled label") if outcome.thumbnail is not None else ""
