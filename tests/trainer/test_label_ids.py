"""Label ids enter enrollment from a crop folder's labels.csv: one outside the grammar
(`edge_app.ids`) stops the run before any file is named by it, the message naming the id, its
line and the grammar, and the bundle is left as it was."""

import csv
import shutil

import pytest

from edge_app.cli import main
from tests.bundle_support import enroll_crops


@pytest.mark.parametrize("label_id", ['a"b', "a\\b", 'a\\"b', "../x", "a b", "a\x01b", "", "x" * 65])
def test_enroll_refuses_a_label_id_outside_the_grammar(base, fresh, tmp_path, capsys, label_id):
    crops = shutil.copytree(enroll_crops(base), tmp_path / "crops")
    with (crops / "labels.csv").open() as f:
        rows = list(csv.reader(f))
    rows.insert(3, [label_id, *rows[1][1:]])
    with (crops / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    before = (fresh / "manifest.json").read_bytes()
    assert main(["enroll", "--bundle", str(fresh), "--labels", str(crops)]) == 2
    error = capsys.readouterr().err
    shown = repr(label_id) if len(label_id) <= 40 else repr(label_id[:40])
    assert f"labels.csv line 4: label id {shown}" in error and "a label id is 1-64 letters" in error, error
    assert "nothing enrolled" in error
    assert (fresh / "manifest.json").read_bytes() == before
