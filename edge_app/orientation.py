"""Which way up a label is, and which pattern it carries, read from its etched glyph.

A label's square border gives its angle only modulo 90 degrees. Every pattern class is
chosen so that no glyph looks the same after a quarter turn, so comparing the glyph in a
crop with the pattern templates at the four quarter turns tells the four apart and names
the pattern. It needs no training: the templates are the glyphs' own strokes, rendered.

`edge_app` may not import `fabrication`, where the strokes are defined, so templates are
data handed in: the factory renders them from its pattern strokes with
:func:`render_templates` and stores them with :meth:`PatternTemplates.save` (the device
carries them in its model bundle). The trainer's pattern head can later replace this.
"""

from __future__ import annotations

import itertools
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from edge_app.atomic_write import replacing
from edge_app.errors import PufError

# A glyph is a list of strokes, each a list of (x, y) in a unit box centred on (0, 0),
# y downwards, its larger side 1 (the format of `fabrication.patterns`).
Strokes = Sequence[Sequence[tuple[float, float]]]

TEMPLATES_FORMAT = 1
_SIZE = 32  # templates and crop glyph regions are compared at this many pixels a side
# How a set's own glyphs can look in a crop, beyond the template: off centre by half a template
# pixel (1/64 of the glyph region), turned 3 degrees, 4% larger or smaller, blurred 0.8 px.
# Scored against their own templates so, each set's glyphs score down to 0.78 (the built-in 44
# and docs/examples/own_glyphs.svg), where the simulator's real crops of them score 0.81-0.97
# (both films) and crops of another set's glyphs mostly 0.3-0.6.
_FLOOR_SHIFT_PX = 0.5
_FLOOR_TURN_DEG = 3.0
_FLOOR_SCALE = 1.04
_FLOOR_BLUR_PX = 0.8


@dataclass(frozen=True, eq=False)
class PatternTemplates:
    """Rendered glyphs, one per pattern class, in canonical orientation.

    `vectors` holds each glyph as a zero-mean, unit-norm row of `size * size` values
    ("ink" positive), covering the central `region_frac` of a label crop's side.
    """

    names: tuple[str, ...]
    vectors: np.ndarray  # (classes, size * size) float32
    size: int = _SIZE
    region_frac: float = 0.5
    _turned: np.ndarray = field(init=False, repr=False)  # set below: the templates at four quarter turns

    def __post_init__(self) -> None:
        vectors = np.asarray(self.vectors, np.float32)
        if vectors.shape != (len(self.names), self.size * self.size) or not self.names:
            raise PufError(f"pattern templates have shape {vectors.shape} for "
                           f"{len(self.names)} names of {self.size}x{self.size} pixels")
        if not np.isfinite(vectors).all():
            raise PufError("pattern templates hold values that are not finite numbers")
        if not 0.1 <= self.region_frac <= 0.9:
            raise PufError(f"template region {self.region_frac} must lie within 0.1-0.9 of a label")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        # rows (quarter_turns, class) of the templates turned counter-clockwise on screen
        images = vectors.reshape(-1, self.size, self.size)
        turned = np.stack([np.rot90(images, q, axes=(1, 2)) for q in range(4)])
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "_turned", turned.reshape(4 * len(self.names), -1).copy())

    @cached_property
    def score_floor(self) -> float:
        """The lowest score this set's own glyphs reach against their own templates when
        drawn a little off (`_FLOOR_*`: shifted, turned, scaled and blurred as crops are).
        A crop's glyph that scores below it is not one of this set's glyphs, whichever
        template it happens to match best. Measured per set, once, from the templates."""
        size = self.size
        centre = (size / 2 - 0.5, size / 2 - 0.5)
        worst = 1.0
        for image, template in zip(self.vectors.reshape(-1, size, size), self.vectors, strict=True):
            for dx, dy, turn, scale in itertools.product(
                    (-_FLOOR_SHIFT_PX, _FLOOR_SHIFT_PX), (-_FLOOR_SHIFT_PX, _FLOOR_SHIFT_PX),
                    (-_FLOOR_TURN_DEG, _FLOOR_TURN_DEG), (1 / _FLOOR_SCALE, _FLOOR_SCALE)):
                warp = cv2.getRotationMatrix2D(centre, turn, scale)
                warp[:, 2] += np.array((dx, dy))
                drawn = cv2.warpAffine(image, warp, (size, size), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                drawn = cv2.GaussianBlur(drawn, (0, 0), _FLOOR_BLUR_PX)
                worst = min(worst, float(template @ _normalised(drawn)))
        return round(worst, 4)

    def save(self, path: Path) -> None:
        path = Path(path)
        with replacing(path, suffix=".npz") as tmp:
            np.savez(tmp, format=np.int64(TEMPLATES_FORMAT), names=np.array(self.names),
                     vectors=self.vectors, size=np.int64(self.size),
                     region_frac=np.float64(self.region_frac))

    @classmethod
    def load(cls, path: Path) -> PatternTemplates:
        path = Path(path)
        try:
            with path.open("rb") as f, np.load(f, allow_pickle=False) as data:  # f: closed even when np.load fails
                if int(data["format"]) != TEMPLATES_FORMAT:
                    raise ValueError(f"format {int(data['format'])}, expected {TEMPLATES_FORMAT}")
                return cls(tuple(str(n) for n in data["names"]), data["vectors"],
                           int(data["size"]), float(data["region_frac"]))
        except FileNotFoundError:
            raise PufError(f"no pattern templates at {path}") from None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            raise PufError(f"cannot read the pattern templates {path}: {error or type(error).__name__}") from None


@dataclass(frozen=True)
class GlyphMatch:
    """The best-matching pattern and quarter turn for one crop.

    `quarter_turns` is how far the glyph in the crop is turned counter-clockwise (on
    screen) from its canonical orientation; `orientation_margin` is how much better the
    best quarter turn scored than the best of the other three, `pattern_margin` how much
    better the best pattern scored than the runner-up at that turn (scores are
    correlations, -1..1).
    """

    pattern: str
    quarter_turns: int
    score: float
    orientation_margin: float
    pattern_margin: float


def render_templates(glyphs: Mapping[str, Strokes], *, glyph_frac: float = 0.4,
                     line_frac: float = 0.035, region_frac: float = 0.5,
                     size: int = _SIZE) -> PatternTemplates:
    """Render glyph strokes as they appear in a label crop.

    `glyph_frac` is the glyph box's side and `line_frac` the etched line width, both as
    fractions of the label's outer side (the layout's glyph_size_um / label_size_um and
    line width / label_size_um)."""
    if not glyphs:
        raise PufError("no glyphs to render templates from")
    if not 0 < glyph_frac <= region_frac:
        raise PufError(f"a glyph of {glyph_frac} of the label does not fit a template "
                       f"region of {region_frac}")
    canvas = size * 8
    scale = canvas * glyph_frac / region_frac  # canvas pixels per glyph unit
    thickness = max(1, round(canvas * line_frac / region_frac))
    vectors = []
    for strokes in glyphs.values():
        image = np.zeros((canvas, canvas), np.uint8)
        for stroke in strokes:
            points = (np.asarray(stroke, np.float64) * scale + canvas / 2 - 0.5) * 16
            cv2.polylines(image, [np.round(points).astype(np.int32)], False, 255, thickness,
                          cv2.LINE_AA, shift=4)
        small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        vectors.append(_normalised(small.astype(np.float32)))
    return PatternTemplates(tuple(glyphs), np.stack(vectors), size, region_frac)


def glyph_vector(crop: np.ndarray, templates: PatternTemplates) -> np.ndarray:
    """The crop's central glyph region as an "ink" vector comparable with the templates."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    side = gray.shape[0]
    lo = int(round(side * (1 - templates.region_frac) / 2))
    region = gray[lo:side - lo, lo:side - lo]
    small = cv2.resize(region, (templates.size, templates.size), interpolation=cv2.INTER_AREA)
    return _normalised(255.0 - small.astype(np.float32))


def classify_glyph(crop: np.ndarray, templates: PatternTemplates) -> GlyphMatch:
    """Compare a square label crop's glyph (BGR, or gray when the caller has it already) with
    every template at four quarter turns."""
    scores = (templates._turned @ glyph_vector(crop, templates)).reshape(4, len(templates.names))
    best_turn = scores.max(axis=1)
    turns = int(np.argmax(best_turn))
    order = np.sort(scores[turns])
    return GlyphMatch(
        pattern=templates.names[int(np.argmax(scores[turns]))],
        quarter_turns=turns,
        score=float(best_turn[turns]),
        orientation_margin=float(best_turn[turns] - best_turn[_OTHER_TURNS[turns]].max()),
        pattern_margin=float(order[-1] - order[-2]) if len(order) > 1 else float(order[-1]),
    )


def canonical(crop: np.ndarray, corners: np.ndarray, quarter_turns: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Undo a glyph's quarter turns: the crop turned back, and its corners (TL, TR, BR,
    BL) renamed so that they name the label's own corners."""
    turn = _TURNS_BACK[quarter_turns % 4]  # OpenCV's turn: np.rot90's pixels, several times faster
    crop = np.ascontiguousarray(crop)
    return (crop if turn is None else cv2.rotate(crop, turn),
            np.asarray(corners)[_RENAMED[quarter_turns % 4]])


_OTHER_TURNS = [[other for other in range(4) if other != turns] for turns in range(4)]
_TURNS_BACK = (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE)
_RENAMED = [[(corner - turns) % 4 for corner in range(4)] for turns in range(4)]  # np.roll's order


def _normalised(image: np.ndarray) -> np.ndarray:
    image = cv2.GaussianBlur(image, (0, 0), 0.7)
    vector = image.ravel() - image.mean()
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 1e-6 else vector).astype(np.float32)
