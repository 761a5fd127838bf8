"""The built-in pattern set: 44 classes etched inside the labels, as vector strokes.

Like the paper's set, the classes are digits, letters, Chinese characters and drawings.
Glyphs come from the Hershey stroke fonts (single-line fonts made for plotters, so
each stroke is one laser pass); the drawings not in those fonts are drawn here.

Every class is chosen so that no glyph looks the same after a rotation (no 0, 8, H, N,
O, S, X, Z, and only one of 6/9, M/W): the etched pattern then fixes the orientation of
a label photographed at any angle, which lets the device store one fingerprint per label.

A glyph is a list of strokes; a stroke is a list of (x, y) points in a unit box centred on
(0, 0) with y downwards, scaled so its larger side is 1. A factory's own glyphs are another
pattern set (`fabrication.pattern_import`); every step reads the set its batch carries
(`edge_app.pattern_set`), this one only when a batch names none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from edge_app.pattern_set import PatternSet
from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um

Stroke = list[tuple[float, float]]

# (class name, Hershey font, character in that font)
_HERSHEY_CLASSES: list[tuple[str, str, str]] = (
    [(d, "futural", d) for d in "1234567"]
    + [(c, "futural", c) for c in "ABCDEFGJKLPQRTUVY"]
    + [
        ("zh_nian", "japanese", "%"),  # 年
        ("zh_da", "japanese", "&"),  # 大
        ("zh_zhe", "japanese", "0"),  # 者
        ("zh_ren", "japanese", "("),  # 人
        ("zh_liu", "japanese", "7"),  # 六
        ("zh_ben", "japanese", "+"),  # 本
        ("zh_jing", "japanese", ","),  # 京
        ("zh_shi", "japanese", "."),  # 時
        ("zh_shang", "japanese", "/"),  # 上
        ("zh_wu", "japanese", "6"),  # 五
        ("mercury", "astrology", "$"),
        ("venus", "astrology", "%"),
        ("mars", "astrology", "'"),
        ("jupiter", "astrology", "*"),
        ("saturn", "astrology", "+"),
        ("psi", "astrology", "/"),
    ]
)

# Drawings on a 0..10 grid, y downwards.
_DRAWN_CLASSES: dict[str, list[Stroke]] = {
    "arrow": [[(5, 10), (5, 0)], [(1, 4), (5, 0), (9, 4)]],
    "house": [[(1, 10), (1, 4), (5, 0), (9, 4), (9, 10), (1, 10)], [(4, 10), (4, 6), (6, 6), (6, 10)]],
    "flag": [[(2, 10), (2, 0), (9, 2.5), (2, 5)]],
    "star": [[(5, 0), (6.2, 3.6), (10, 3.7), (7, 6), (8.1, 9.7), (5, 7.5), (1.9, 9.7),
              (3, 6), (0, 3.7), (3.8, 3.6), (5, 0)]],
}


@dataclass(frozen=True)
class PatternClass:
    index: int
    name: str
    strokes: tuple[tuple[tuple[float, float], ...], ...]


def _normalise(strokes: list[Stroke]) -> tuple[tuple[tuple[float, float], ...], ...]:
    xs = [x for stroke in strokes for x, _ in stroke]
    ys = [y for stroke in strokes for _, y in stroke]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    scale = max(max(xs) - min(xs), max(ys) - min(ys))
    return tuple(
        tuple(((x - cx) / scale, (y - cy) / scale) for x, y in stroke) for stroke in strokes
    )


def _hershey_strokes(font_name: str, char: str) -> list[Stroke]:
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(font_name)
    # Without normalize_rendering, Hershey coordinates already have y downwards.
    return [list(stroke) for stroke in font.strokes_for_text(char)]


@cache
def pattern_classes() -> tuple[PatternClass, ...]:
    """All 44 classes, in class-index order."""
    raw: list[tuple[str, list[Stroke]]] = [
        (name, _hershey_strokes(font, char)) for name, font, char in _HERSHEY_CLASSES
    ]
    raw += list(_DRAWN_CLASSES.items())
    return tuple(PatternClass(i, name, _normalise(strokes)) for i, (name, strokes) in enumerate(raw))


def pattern_names() -> list[str]:
    return [p.name for p in pattern_classes()]


def pattern_by_name(name: str) -> PatternClass:
    for pattern in pattern_classes():
        if pattern.name == name:
            return pattern
    raise PufError(f"unknown pattern class {name!r}; known classes: {', '.join(pattern_names())}")


BUILTIN_SET_NAME = "builtin44"


@cache
def builtin_pattern_set() -> PatternSet:
    """The 44 classes as a pattern set."""
    return PatternSet(BUILTIN_SET_NAME, tuple((p.name, p.strokes) for p in pattern_classes()))


def layout_pattern_set(layout) -> PatternSet:
    """The pattern set a batch layout carries; the built-in one for a layout that names none."""
    return layout.pattern_set or builtin_pattern_set()


def pattern_templates(pattern_set: PatternSet | None = None, glyph_size_um: float = BatchLayout.glyph_size_um,
                      label_size_um: float = BatchLayout.label_size_um):
    """The glyph templates a device reads a label's pattern and orientation with
    (`edge_app.orientation`), rendered from a pattern set (default: the built-in one) at the
    label's proportions and the etched line's width."""
    return (pattern_set or builtin_pattern_set()).templates(
        glyph_frac=glyph_size_um / label_size_um, line_frac=line_width_um(REFERENCE_POWER_MW) / label_size_um)
