"""Reading a label's glyph: which pattern, and which way up."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_app.errors import PufError
from edge_app.orientation import PatternTemplates, canonical, classify_glyph, render_templates
from fabrication.patterns import pattern_classes
from tests.segment_support import make_layout, templates_for


def synthetic_crop(strokes, quarter_turns: int, rng: np.random.Generator, size: int = 128,
                   shift_px: float = 0.0) -> np.ndarray:
    """A label crop as segmentation makes it: grainy film, the dark border ring, the glyph
    (turned `quarter_turns` counter-clockwise on screen), shifted a little."""
    film = rng.normal(150, 35, (size // 2, size // 2)).clip(0, 255).astype(np.uint8)
    crop = cv2.resize(film, (size, size), interpolation=cv2.INTER_NEAREST)
    border = round(0.05 * size)
    cv2.rectangle(crop, (0, 0), (size - 1, size - 1), 15, 2 * border)
    scale, line = 0.4 * size, max(1, round(0.035 * size))
    for stroke in strokes:
        points = np.asarray(stroke) * scale + size / 2 - 0.5 + shift_px
        cv2.polylines(crop, [np.round(points * 16).astype(np.int32)], False, 20, line,
                      cv2.LINE_AA, shift=4)
    crop = cv2.GaussianBlur(crop, (0, 0), 1.0)
    return np.ascontiguousarray(np.rot90(cv2.merge([crop // 3, crop, crop // 10]), quarter_turns))


def test_every_pattern_is_read_at_every_quarter_turn() -> None:
    templates = templates_for(make_layout())
    rng = np.random.default_rng(1)
    for pattern in pattern_classes():
        for turns in range(4):
            crop = synthetic_crop(pattern.strokes, turns, rng, shift_px=rng.uniform(-2, 2))
            match = classify_glyph(crop, templates)
            assert (match.pattern, match.quarter_turns) == (pattern.name, turns)
            assert match.score > 0.4


def test_a_crop_without_a_glyph_has_no_clear_orientation() -> None:
    templates = templates_for(make_layout())
    empty = synthetic_crop([], 0, np.random.default_rng(2))
    assert classify_glyph(empty, templates).orientation_margin < 0.05


@settings(max_examples=50, deadline=None)
@given(turns=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_canonical_undoes_a_quarter_turn(turns: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    crop = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    corners = rng.uniform(0, 100, (4, 2))
    seen_crop = np.rot90(crop, turns)
    seen_corners = np.roll(corners, -turns, axis=0)  # the seen crop's TL is the label's TR...
    back_crop, back_corners = canonical(seen_crop, seen_corners, turns)
    assert np.array_equal(back_crop, crop) and np.array_equal(back_corners, corners)


def test_templates_round_trip_through_a_file(tmp_path) -> None:
    templates = templates_for(make_layout())
    templates.save(tmp_path / "t.npz")
    loaded = PatternTemplates.load(tmp_path / "t.npz")
    assert loaded.names == templates.names and loaded.region_frac == templates.region_frac
    assert np.array_equal(loaded.vectors, templates.vectors)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PufError, match="cannot read the pattern templates"):
        PatternTemplates.load(tmp_path / "bad.npz")
    with pytest.raises(PufError, match="no pattern templates"):
        PatternTemplates.load(tmp_path / "missing.npz")


def test_bad_templates_are_refused_in_words() -> None:
    with pytest.raises(PufError, match="no glyphs"):
        render_templates({})
    with pytest.raises(PufError, match="does not fit"):
        render_templates({"A": [[(0, 0), (1, 1)]]}, glyph_frac=0.7)
    with pytest.raises(PufError, match="shape"):
        PatternTemplates(("A", "B"), np.zeros((1, 32 * 32), np.float32))
