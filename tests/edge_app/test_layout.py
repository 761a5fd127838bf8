import pytest

from edge_app.errors import PufError
from edge_app.layout import BatchLayout, parse_label_id


def make(**kw):
    cols, rows = kw.get("label_cols", 4), kw.get("label_rows", 3)
    count = cols * rows * kw.get("field_cols", 2) * kw.get("field_rows", 2)
    return BatchLayout("B7", ("A",) * count, **{"field_cols": 2, "field_rows": 2, **kw})


def test_positions_tile_fields_row_by_row():
    layout = make()
    assert layout.label_center_um(0, 0) == (125.0, 125.0)
    assert layout.label_center_um(0, 5) == (375.0, 375.0)  # row 1, col 1
    assert layout.field_origin_um(1) == (1000.0, 0.0)
    assert layout.field_origin_um(2) == (0.0, 750.0)
    assert layout.field_center_um(3) == (1500.0, 1125.0)
    assert layout.label_count == 48 and layout.gap_um == 50.0


def test_label_ids_round_trip():
    layout = make()
    assert layout.label_id(3, 11) == "B7-0003-11"
    assert parse_label_id("B7-0003-11") == ("B7", 3, 11)
    with pytest.raises(PufError):
        parse_label_id("B7-3-11")
    with pytest.raises(PufError, match="outside the batch"):
        layout.label_id(4, 0)


def test_json_round_trip(tmp_path):
    layout = make(pitch_um=260.0)
    layout.save(tmp_path / "layout.json")
    assert BatchLayout.load(tmp_path / "layout.json") == layout


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"pitch_um": 180.0}, "do not fit at a pitch"),
        ({"border_width_um": 100.0}, "leaves no inside"),
        ({"glyph_size_um": 170.0}, "does not fit inside the border"),
        ({"label_size_um": -5.0}, "must be positive"),
        ({"label_cols": 0}, "whole number"),
    ],
)
def test_impossible_layouts_are_refused(kw, message):
    with pytest.raises(PufError, match=message):
        make(**kw)


def test_wrong_pattern_count_and_bad_files(tmp_path):
    with pytest.raises(PufError, match="names 3 patterns for 48 labels"):
        BatchLayout("B7", ("A",) * 3, field_cols=2, field_rows=2)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PufError, match="cannot read"):
        BatchLayout.load(tmp_path / "bad.json")
    with pytest.raises(PufError, match="no batch layout"):
        BatchLayout.load(tmp_path / "missing.json")
