"""The history screen (`history.kv`): the journal's checks, newest first; a tapped row opens
its photo and what was decided."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import TYPE_CHECKING

import numpy as np
from kivy.properties import BooleanProperty, ColorProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen

from edge_app.app.i18n import N_, _
from edge_app.app.inspection import TITLES
from edge_app.app.widgets import COLOURS, to_texture

if TYPE_CHECKING:
    from edge_app.app.puf_app import PufApp

log = logging.getLogger(__name__)

NO_ID = (N_("not read"), N_("no match"))  # what stands for the label id of a retake, a counterfeit


def local_time(iso: str, now: datetime | None = None) -> str:
    """A journal time (ISO 8601, UTC) as the inspector reads it: local time, the date only
    when it is not today."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    now = now or datetime.now(UTC).astimezone()
    return moment.strftime("%H:%M:%S" if moment.date() == now.date() else "%d %b %H:%M")


def verdict_title(verdict: str) -> str:
    """GENUINE | COUNTERFEIT | REVOKED | RETAKE in the language in use (a verdict the app does not
    know, from a newer journal, in capitals)."""
    return _(TITLES[verdict]) if verdict in TITLES else verdict.upper()


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


class EntryView(ModalView):
    """One journal row, tapped in the history: its crop and what was decided."""

    title = StringProperty("")
    tint = ColorProperty((0, 0, 0, 1))
    ink = ColorProperty((1, 1, 1, 1))
    lines = StringProperty("")


class HistoryController:
    """Reads the journal's checks on the worker each time the screen is shown, and opens one."""

    def __init__(self, app: PufApp) -> None:
        self.app = app
        self.entries: dict = {}
        self.loads = 0  # times the history was read from the journal
        self.entry_view: EntryView | None = None

    @cached_property
    def screen(self) -> HistoryScreen:
        return HistoryScreen(name="history")

    def redraw(self) -> None:
        """Show again in the language in use."""
        self._show()

    def refresh(self) -> None:
        self.app.submit(self.app.inspector.history, self._read)

    def _read(self, entries: list | None, error: BaseException | None) -> None:
        if error is not None:
            log.error("reading the journal failed", exc_info=error)
        self.entries = {entry.id: entry for entry in entries or []}
        self.loads += 1
        self._show()

    def _show(self) -> None:
        rows = []
        for entry in self.entries.values():
            tint, ink = COLOURS.get(entry.verdict, COLOURS["unreadable"])
            rows.append({"entry_id": entry.id, "title": verdict_title(entry.verdict), "tint": tint, "ink": ink,
                         "label_id": entry.label_id or _(NO_ID[entry.verdict == "counterfeit"]),
                         "identified": entry.label_id is not None,
                         "score": "" if entry.score is None else f"{entry.score:.3f}", "when": local_time(entry.time)})
        self.screen.ids.rows.data = rows
        self.screen.empty = not rows

    def show_entry(self, entry_id: int) -> None:
        if entry_id in self.entries:
            self.app.submit(partial(self.app.inspector.crop, entry_id), partial(self._entry, entry_id))

    def _entry(self, entry_id: int, crop: np.ndarray | None, error: BaseException | None) -> None:
        entry = self.entries[entry_id]
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
