"""Which image is which field: an order file's bad rows are refused in words, and a
folder without one is numbered by sorted name, never by the digits in its names."""

from __future__ import annotations

import pytest

from edge_app.errors import PufError
from fabrication.segmentation.field_images import find_fields, folder_layout, read_order


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "scans"
    images.mkdir()
    for name in ("IMG_20251130_101500.png", "IMG_20251130_101230.png", "a.tif"):
        (images / name).write_bytes(b"")
    (images / "notes.txt").write_text("not an image")
    return images


def test_sorted_names_number_the_fields(folder) -> None:
    found = find_fields(folder, 0.6)
    assert [(f.field, f.path.name) for f in found.fields] == [
        (0, "IMG_20251130_101230.png"), (1, "IMG_20251130_101500.png"), (2, "a.tif")]
    layout = folder_layout(folder, found.fields)
    assert layout.fields_per_batch == 3 and set(layout.patterns) == {"unknown"}


def test_an_order_file(folder, tmp_path) -> None:
    order = tmp_path / "order.csv"
    order.write_text("\ufefffield, File\n7, a.tif\n\n0,IMG_20251130_101500.png\n")
    found = find_fields(folder, None, order)
    assert [(f.field, f.path.name) for f in found.fields] == [(0, "IMG_20251130_101500.png"), (7, "a.tif")]
    assert found.unlisted == ["IMG_20251130_101230.png"] and found.order == "order file order.csv"
    assert folder_layout(folder, found.fields).fields_per_batch == 8


@pytest.mark.parametrize("text, message", [
    ("name,number\na.tif,1\n", "header naming the columns file,field"),
    ("", "header naming the columns file,field"),
    ("file,field\n", "lists no fields"),
    ("file,field\na.tif,one\n", "row 2: field 'one' is not a whole number"),
    ("file,field\na.tif,-1\n", "row 2: field '-1' is not a whole number"),
    ("file,field\n,1\n", "row 2: no file named"),
    ("file,field\na.tif,1\nIMG_20251130_101500.png,1\n", "row 3: field 1 is already given in row 2"),
    ("file,field\na.tif,1\na.tif,2\n", "row 3: file a.tif is already given in row 2"),
    ("file,field\nb.tif,1\n", r"not in .*scans: b.tif \(row 2\)"),
])
def test_bad_order_files_are_refused_in_words(folder, tmp_path, text: str, message: str) -> None:
    order = tmp_path / "order.csv"
    order.write_text(text)
    with pytest.raises(PufError, match=message):
        read_order(order, folder)


def test_a_missing_order_file_is_refused_in_words(folder, tmp_path) -> None:
    with pytest.raises(PufError, match="cannot read the order file"):
        find_fields(folder, 0.6, tmp_path / "nowhere.csv")
