"""The vector geometry of every label: border passes and pattern strokes, in design µm.

The border is a square ring of `border_width_um`. A laser line has a width of its own
(it grows with power), so the ring is engraved as concentric square passes `hatch_um`
apart, the outermost one set in by half the nominal line width so the ring's outer edge
sits on the label edge at the nominal power. Glyph strokes are single passes centred
in the label.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from edge_app.layout import BatchLayout
from fabrication.patterns import layout_pattern_set

Point = tuple[float, float]


@dataclass(frozen=True)
class Pass:
    """One continuous laser pass (laser on from the first point to the last)."""

    points: tuple[Point, ...]
    kind: str  # "border" or "pattern"


def square(cx: float, cy: float, half: float) -> tuple[Point, ...]:
    """A closed square path (first point repeated at the end), clockwise on screen."""
    return (
        (cx - half, cy - half),
        (cx + half, cy - half),
        (cx + half, cy + half),
        (cx - half, cy + half),
        (cx - half, cy - half),
    )


def border_passes(
    layout: BatchLayout, cx: float, cy: float, line_width_um: float, hatch_um: float
) -> list[Pass]:
    reach = max(layout.border_width_um - line_width_um, 0.0)
    count = int(math.ceil(reach / hatch_um - 1e-9)) + 1
    step = reach / (count - 1) if count > 1 else 0.0
    outer = layout.label_size_um / 2 - min(line_width_um, layout.border_width_um) / 2
    return [Pass(square(cx, cy, outer - k * step), "border") for k in range(count)]


def pattern_passes(layout: BatchLayout, cx: float, cy: float, pattern: str) -> list[Pass]:
    size = layout.glyph_size_um
    return [
        Pass(tuple((cx + x * size, cy + y * size) for x, y in stroke), "pattern")
        for stroke in layout_pattern_set(layout).strokes(pattern)
    ]


def label_passes(
    layout: BatchLayout, field: int, slot: int, line_width_um: float, hatch_um: float = 2.5
) -> list[Pass]:
    cx, cy = layout.label_center_um(field, slot)
    return border_passes(layout, cx, cy, line_width_um, hatch_um) + pattern_passes(
        layout, cx, cy, layout.pattern_of(field, slot)
    )


def batch_labels(layout: BatchLayout) -> Iterator[tuple[int, int]]:
    """(field, slot) of every label, in label-index order."""
    for field in range(layout.fields_per_batch):
        for slot in range(layout.labels_per_field):
            yield field, slot
