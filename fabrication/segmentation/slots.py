"""Which physical label is which: found labels to (field, slot) and so to label ids.

Labels lie on one lattice across the whole batch (fields tile it at whole multiples of
the pitch), so the centres found in a field photo fix the lattice's angle and phase
exactly, but not which lattice column is the field's first: a stage that slipped by more
than half a pitch looks just like one that did not slip. The offset is taken as the one
within `max_shift_um` of where the field should be; when several are (a large slip, or
a whole row or column out of the frame), the etched glyphs decide, compared with the
layout's pattern of every slot, and failing that the field is ambiguous: no ids rather
than wrong ones. A hypothesis that puts a found label where the batch has none is
ruled out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_app.layout import BatchLayout

MAX_SHIFT_UM = 220.0  # a slipped stage lands up to ~200 µm off, plus its usual error
_OFF_LATTICE = 0.15  # a centre farther than this (in pitches) from a lattice point


@dataclass(frozen=True)
class LabelSlot:
    field: int
    slot: int
    row: int
    col: int
    label_id: str


@dataclass
class SlotAssignment:
    status: str  # "ok", "ambiguous" or "empty"
    detail: str
    slots: list[LabelSlot | None]  # per found label, in the order given
    reasons: list[str | None]  # why a label has no slot of this field ("neighbour", ...)
    shift_um: tuple[float, float] | None = None  # where the field was found vs expected
    design_to_image: np.ndarray | None = None  # 2x3 affine, design µm -> image px
    hypotheses: int = 0  # lattice offsets within reach
    pattern_agreement: tuple[int, int] | None = None  # glyphs matching the layout, compared
    notes: list[str] = field(default_factory=list)

    def to_image(self, points_um: np.ndarray) -> np.ndarray:
        """Design µm (..., 2) to image px under the solved offset."""
        if self.design_to_image is None:
            raise ValueError("the field has no solved position")
        points = np.asarray(points_um, np.float64)
        return points @ self.design_to_image[:, :2].T + self.design_to_image[:, 2]


def slot_corners_um(layout: BatchLayout, field_index: int, slot: int) -> np.ndarray:
    """A slot's outer corners (TL, TR, BR, BL) in design µm."""
    cx, cy = layout.label_center_um(field_index, slot)
    half = layout.label_size_um / 2
    return np.array([[cx - half, cy - half], [cx + half, cy - half],
                     [cx + half, cy + half], [cx - half, cy + half]])


def assign_slots(centres: Sequence[tuple[float, float]], angles_deg: Sequence[float],
                 layout: BatchLayout, field_index: int, pixel_size_um: float,
                 image_size: tuple[int, int], patterns: Sequence[str | None] | None = None,
                 max_shift_um: float = MAX_SHIFT_UM,
                 expected_shift_um: tuple[float, float] = (0.0, 0.0)) -> SlotAssignment:
    """Give each found label (centre in image px, top-edge angle in degrees) its slot.

    `patterns` are the glyph classes read from the crops (None where unread); they settle
    offsets the geometry leaves open. The photo's centre is taken to lie within
    `max_shift_um` of the field's centre moved by `expected_shift_um` (design µm; where
    the stage reports it went, when that is known to differ from the plan)."""
    n = len(centres)
    if n == 0:
        return SlotAssignment("empty", "no labels found", [], [])
    if len(angles_deg) != n or (patterns is not None and len(patterns) != n):
        raise ValueError("centres, angles and patterns must have one entry per label")
    pitch = layout.pitch_um
    centres_px = np.asarray(centres, np.float64).reshape(n, 2)
    angle = math.atan2(np.sin(np.radians(angles_deg)).mean(), np.cos(np.radians(angles_deg)).mean())
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    middle = np.array([(image_size[0] - 1) / 2, (image_size[1] - 1) / 2])
    field_centre = np.array(layout.field_center_um(field_index))
    # design position of each centre, if the photo were centred on the field
    design = field_centre + (centres_px - middle) @ rotation * pixel_size_um
    lattice = design / pitch - 0.5  # global (column, row) of the batch's label lattice
    phase = np.angle(np.exp(2j * np.pi * lattice).mean(axis=0)) / (2 * np.pi)
    index = np.round(lattice - phase)
    off = np.abs(lattice - phase - index).max(axis=1) > _OFF_LATTICE
    slots: list[LabelSlot | None] = [None] * n
    reasons: list[str | None] = ["off-lattice" if o else None for o in off]
    on = np.flatnonzero(~off)
    if not len(on):
        return SlotAssignment("ambiguous", "no two labels agree on a lattice", slots, reasons)

    # the field's offset: shift = (a - phase) * pitch for whole a, within reach
    def offsets(p: float, expected: float) -> list[int]:
        low = math.ceil(p + (expected - max_shift_um) / pitch)
        high = math.floor(p + (expected + max_shift_um) / pitch)
        return list(range(low, high + 1))

    layout_cols = layout.label_cols * layout.field_cols
    layout_rows = layout.label_rows * layout.field_rows
    candidates = []
    for ax, ay in itertools.product(offsets(phase[0], expected_shift_um[0]),
                                    offsets(phase[1], expected_shift_um[1])):
        cols, rows = index[on, 0] + ax, index[on, 1] + ay
        if (cols < 0).any() or (rows < 0).any() or (cols >= layout_cols).any() \
                or (rows >= layout_rows).any():
            continue  # a label where the batch has none
        candidates.append((ax, ay))
    result = SlotAssignment("ambiguous", "", slots, reasons, hypotheses=len(candidates))
    if not candidates:
        result.detail = "the labels found do not fit in the batch at any offset within reach"
        return result
    votes = [_votes(layout, index[on] + c, patterns, on) for c in candidates]
    if patterns is not None and any(v[1] for v in votes):
        ranked = sorted(range(len(candidates)), key=lambda i: -votes[i][0])
        best = ranked[0]
        matches, compared = votes[best]
        runner_up = votes[ranked[1]][0] if len(ranked) > 1 else -math.inf
        result.pattern_agreement = (matches, compared)
        if 2 * matches < compared or (len(ranked) > 1 and matches < runner_up + 2):
            result.detail = (f"{len(candidates)} lattice offsets are possible and the glyphs "
                             f"do not settle it ({matches} of {compared} match the best)")
            return result
    elif len(candidates) == 1:
        best = 0
    else:
        result.detail = (f"{len(candidates)} lattice offsets are possible (a slipped stage?) "
                         "and no glyphs were read to tell them apart")
        return result
    ax, ay = candidates[best]
    shift = (np.array([ax, ay]) - phase) * pitch
    for i in on:
        col, row = int(index[i, 0] + ax), int(index[i, 1] + ay)
        home = (row // layout.label_rows) * layout.field_cols + col // layout.label_cols
        r, c = row % layout.label_rows, col % layout.label_cols
        slot = layout.slot_of(r, c)
        slots[i] = LabelSlot(home, slot, r, c, layout.label_id(home, slot))
        if home != field_index:
            reasons[i] = "neighbour"
    scale = rotation / pixel_size_um
    origin = middle - scale @ (field_centre + shift)
    result.status = "ok"
    result.detail = f"field found {math.hypot(*shift):.0f} um from its expected place"
    result.shift_um = (float(shift[0]), float(shift[1]))
    result.design_to_image = np.hstack([scale, origin[:, None]])
    return result


def _votes(layout: BatchLayout, cells: np.ndarray, patterns: Sequence[str | None] | None,
           on: np.ndarray) -> tuple[int, int]:
    """How many read glyphs match the layout's pattern at the hypothesised cells."""
    if patterns is None:
        return 0, 0
    matches = compared = 0
    for (col, row), i in zip(cells.astype(int), on, strict=True):
        if patterns[i] is None:
            continue
        home = (row // layout.label_rows) * layout.field_cols + col // layout.label_cols
        slot = layout.slot_of(row % layout.label_rows, col % layout.label_cols)
        compared += 1
        matches += layout.pattern_of(home, slot) == patterns[i]
    return matches, compared
