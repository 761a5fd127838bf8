"""A pattern set: the glyphs a factory etches inside its labels, as data.

The built-in 44 classes (`fabrication.patterns`) are one pattern set; a factory's own
glyphs (from SVG, DXF or a stroke font: `fabrication.pattern_import`) are another. A set is
chosen at `puf design` and travels with everything made from it: the batch layout (and
so the registry), the training run, the model and the bundle. Each of them reads the
classes from the set it carries, so a model can tell whether it knows a batch's glyphs.

A glyph is a list of strokes, each a list of (x, y) points in a unit box centred on
(0, 0), y downwards, its larger side 1 (one stroke is one laser pass). Two glyphs are the
same class only if their names and strokes agree (`glyph_digest`): a model trained on a
set knows a batch's glyphs when every one of them is in its set, stroke for stroke.

On disk (``patterns.json``, and inside ``layout.json``)::

    {"format": 1, "name": "builtin44", "classes": [{"name": "A", "strokes": [[[x, y], ...], ...]}, ...]}

This module lives in `edge_app` because the layout, segmentation and the device use it;
it imports nothing of the factory's.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import PufError
from edge_app.json_files import load_json, write_json
from edge_app.orientation import render_templates

PATTERN_SET_FILE = "patterns.json"
PATTERN_SET_FORMAT = 1
MAX_CLASSES = 1000
MAX_POINTS = 5000  # per glyph: a laser glyph is a few dozen points
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,40}$")
_DIGITS = 4  # coordinates are kept to 1e-4 of the glyph box (0.01 um on an 80 um glyph)

Stroke = tuple[tuple[float, float], ...]
Glyph = tuple[Stroke, ...]


def normalise_strokes(strokes: Sequence[Sequence[Sequence[float]]]) -> Glyph:
    """Strokes moved and scaled into the unit box (centred, larger side 1), rounded."""
    points = [(float(x), float(y)) for stroke in strokes for x, y in stroke]
    if not points:
        raise PufError("a glyph has no points")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    scale = max(max(xs) - min(xs), max(ys) - min(ys))
    if not (math.isfinite(scale) and scale > 0):
        raise PufError("a glyph must have extent (its points are all in one place, or not numbers)")
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    return tuple(tuple((round((x - cx) / scale, _DIGITS), round((y - cy) / scale, _DIGITS)) for x, y in stroke)
                 for stroke in strokes)


@dataclass(frozen=True)
class PatternSet:
    """Named glyphs in class order."""

    name: str
    glyphs: tuple[tuple[str, Glyph], ...]

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and _NAME.match(self.name)):
            raise PufError(f"pattern set name {self.name!r} must be 1-40 letters, digits or _.+-")
        if not self.glyphs:
            raise PufError(f"pattern set {self.name!r} has no glyphs")
        if len(self.glyphs) > MAX_CLASSES:
            raise PufError(f"pattern set {self.name!r} has {len(self.glyphs)} glyphs; at most {MAX_CLASSES}")
        seen: set[str] = set()
        for glyph_name, strokes in self.glyphs:
            if not (isinstance(glyph_name, str) and _NAME.match(glyph_name)):
                raise PufError(f"glyph name {glyph_name!r} must be 1-40 letters, digits or _.+- "
                               "(it is written in CSV files and registries)")
            if glyph_name in seen:
                raise PufError(f"pattern set {self.name!r} names glyph {glyph_name!r} twice")
            seen.add(glyph_name)
            _check_glyph(glyph_name, strokes)

    # ---- reading ---------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.glyphs]

    def strokes(self, name: str) -> Glyph:
        for glyph_name, strokes in self.glyphs:
            if glyph_name == name:
                return strokes
        raise PufError(f"unknown pattern class {name!r}: not in the pattern set {self.name!r} "
                       f"(its glyphs: {', '.join(self.names[:12])}{' ...' if len(self.glyphs) > 12 else ''})")

    def glyph_digest(self, name: str) -> str:
        """What makes a glyph the same class in two sets: its name and strokes (to 1e-4 of
        the glyph, so that float noise in an import does not make another class)."""
        return _digest([name, _rounded(self.strokes(name))])

    @property
    def sha256(self) -> str:
        """The whole set's identity: its glyphs in class order (not its name)."""
        return _digest([[name, _rounded(strokes)] for name, strokes in self.glyphs])

    def subset(self, names: Iterable[str]) -> PatternSet:
        """The set restricted to `names` (kept in this set's order)."""
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            self.strokes(name)  # refuses a name not in the set
        return PatternSet(self.name, tuple((n, s) for n, s in self.glyphs if n in wanted))

    def unknown_glyphs(self, other: PatternSet) -> list[str]:
        """Glyphs of `other` that this set does not hold stroke for stroke (a model trained
        on this set cannot read them)."""
        mine = {name: self.glyph_digest(name) for name in self.names}
        return [name for name in other.names if mine.get(name) != other.glyph_digest(name)]

    def describe(self) -> dict:
        """What a run, a model or a bundle records of the set it was made with."""
        return {"name": self.name, "classes": len(self.glyphs), "sha256": self.sha256}

    # ---- files -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": PATTERN_SET_FORMAT, "name": self.name,
                "classes": [{"name": n, "strokes": [[list(p) for p in stroke] for stroke in strokes]}
                            for n, strokes in self.glyphs]}

    @classmethod
    def from_dict(cls, data: object) -> PatternSet:
        if not isinstance(data, dict) or data.get("format") != PATTERN_SET_FORMAT:
            raise PufError(f"not a pattern set of format {PATTERN_SET_FORMAT}")
        classes = data.get("classes")
        if not isinstance(classes, list):
            raise PufError("a pattern set's classes must be a list")
        glyphs = []
        for entry in classes:
            if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("strokes"), list):
                raise PufError("every class of a pattern set needs a name and a list of strokes")
            glyphs.append((entry["name"], _strokes_from_json(entry["name"], entry["strokes"])))
        return cls(data.get("name", ""), tuple(glyphs))

    @classmethod
    def from_glyphs(cls, name: str, glyphs: Mapping[str, Sequence[Sequence[Sequence[float]]]]) -> PatternSet:
        """A set from raw strokes in any units (each glyph normalised to the unit box)."""
        return cls(name, tuple((glyph_name, normalise_strokes(strokes)) for glyph_name, strokes in glyphs.items()))

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict(), separators=(",", ":"))

    @classmethod
    def load(cls, path: Path) -> PatternSet:
        return load_json(path, "pattern set", cls.from_dict)

    def templates(self, glyph_frac: float, line_frac: float):
        """The glyph templates segmentation reads patterns and orientation with
        (`edge_app.orientation`), for labels of these proportions."""
        return render_templates(dict(self.glyphs), glyph_frac=glyph_frac, line_frac=line_frac)


def _rounded(strokes: Glyph) -> list:
    return [[[round(x, _DIGITS) + 0.0, round(y, _DIGITS) + 0.0] for x, y in stroke] for stroke in strokes]


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


def _check_glyph(name: str, strokes: object) -> None:
    if not isinstance(strokes, tuple) or not strokes:
        raise PufError(f"glyph {name!r} has no strokes")
    count = 0
    for stroke in strokes:
        if not isinstance(stroke, tuple) or len(stroke) < 2:
            raise PufError(f"glyph {name!r}: every stroke needs at least two points")
        for point in stroke:
            if not (isinstance(point, tuple) and len(point) == 2 and all(
                    isinstance(v, float) and math.isfinite(v) and abs(v) <= 0.5 + 1e-3 for v in point)):
                raise PufError(f"glyph {name!r}: point {point!r} is not an (x, y) pair inside the unit box")
        count += len(stroke)
    if count > MAX_POINTS:
        raise PufError(f"glyph {name!r} has {count} points; at most {MAX_POINTS}")


def _strokes_from_json(name: object, strokes: list) -> Glyph:
    try:
        return tuple(tuple((float(x), float(y)) for x, y in stroke) for stroke in strokes)
    except (TypeError, ValueError):
        raise PufError(f"glyph {name!r}: strokes must be lists of [x, y] numbers") from None
