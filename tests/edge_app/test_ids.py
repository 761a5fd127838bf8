"""One grammar for every id (`edge_app.ids`), enforced where ids enter: a batch layout, the
registry, a label id's parts, a product or region. Each refusal names the id and the grammar."""

import dataclasses
import re

import pytest

from edge_app.errors import PufError
from edge_app.ids import SHOWN_CHARS, check_id
from edge_app.layout import BatchLayout, parse_label_id
from fabrication.registry import FieldRecord, LabelRecord, Registry

# what must never reach a store, a filter or a file name
BAD = ['a"b', "a\\b", 'a\\"b', "../x", "a/b", "a b", "a\tb", "a\nb", "a\x00b", "a\x7fb", "", ".hidden", "-x", "_x", "é",
       "x" * 65, "x" * 100000]


def shown(text: str) -> str:
    """How a refusal names the id (`check_id`): its repr, cut when too long to be one."""
    return repr(text) if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"


@pytest.mark.parametrize("text", BAD)
@pytest.mark.parametrize("kind, grammar", [("label", "1-64 letters, digits, '_', '-' or '.'"),
                                           ("device", "1-64 letters, digits, '_', '-' or '.'"),
                                           ("batch", "1-32 letters, digits or '_', starting"),
                                           ("region", "1-40 letters or digits")])
def test_every_kind_of_id_refuses_quotes_backslashes_paths_and_control_characters(kind, grammar, text):
    with pytest.raises(PufError) as refused:
        check_id(kind, text)
    assert f"{kind} id {shown(text)} is not allowed: a {kind} id is {grammar}" in str(refused.value)
    assert len(str(refused.value)) < 300  # a very long id is not pasted whole


@pytest.mark.parametrize("kind, text", [("label", "V1-0000-03"), ("label", "tea.2026_lot-7"), ("label", "7"),
                                        ("device", "dev-0123456789abcdef"), ("batch", "B_7"), ("region", "eu")])
def test_the_ids_the_system_makes_are_ids(kind, text):
    assert check_id(kind, text) == text


def test_a_non_text_id_is_refused():
    with pytest.raises(PufError, match="label id None is not allowed"):
        check_id("label", None)


@pytest.mark.parametrize("batch_id", ['a"b', "../x", "a-b", "", "B" * 33])
def test_a_batch_layout_refuses_a_batch_id_outside_the_grammar(batch_id):
    layout = BatchLayout("B7", ("A",) * 48, field_cols=2, field_rows=2)
    with pytest.raises(PufError, match=re.escape(f"batch id {shown(batch_id)} is not allowed")):
        dataclasses.replace(layout, batch_id=batch_id)


def test_a_label_id_is_matched_whole():
    assert parse_label_id("B7-0001-02") == ("B7", 1, 2)
    with pytest.raises(PufError, match="is not a label id"):
        parse_label_id("B7-0001-02\n")


@pytest.mark.parametrize("label_id", BAD[:6])
def test_the_registry_records_no_label_id_outside_the_grammar(tmp_path, label_id):
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.upsert_batch(BatchLayout("B7", ("A",) * 48, field_cols=2, field_rows=2))
        good = LabelRecord("B7-0000-00", "B7", 0, 0, 0, 0, "found")
        with pytest.raises(PufError, match=re.escape(f"label id {shown(label_id)} is not allowed")):
            registry.record_field(FieldRecord("B7", 0, "done"), [good, dataclasses.replace(good, label_id=label_id)])
        assert registry.labels("B7") == [] and registry.field("B7", 0) is None  # nothing recorded
