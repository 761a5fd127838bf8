"""JSON a person hands over (edge_app/json_files.py): nested no deeper than MAX_DEPTH, so that
Python's recursive parser never fails with a RecursionError (issue 22)."""

import pytest

from edge_app.errors import PufError
from edge_app.json_files import MAX_DEPTH, parse_json, read_json


def test_json_as_deep_as_allowed_is_read_and_brackets_inside_strings_do_not_count():
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(deep, "test file") is not None
    text = '{"a": ["' + "[" * 1000 + '\\"{", 1]}'
    assert parse_json(text, "test file") == {"a": ["[" * 1000 + '"{', 1]}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200_000])
def test_deeper_json_is_refused_with_its_depth_before_parsing(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' * depth + "1" + "}" * depth)
    with pytest.raises(PufError, match=rf"cannot read the layout {path}: nested {depth} levels deep"):
        read_json(path, "layout")
    with pytest.raises(PufError, match=rf"^cluster spec: nested {depth} levels deep, more than the {MAX_DEPTH}"):
        parse_json(path.read_text(), "cluster spec")
