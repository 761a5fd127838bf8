"""A region's rows split by pattern into files (trainer.pattern_spill): each pattern read back
alone in label and copy order, whatever order the store gave; a pattern name never becomes a
path; rows of a pattern the bundle does not know are left out and counted."""

import numpy as np

from trainer.pattern_spill import PatternSpill


def add(spill: PatternSpill, *rows: tuple[str, str, int, float]) -> None:
    """Rows (label id, pattern, copy, the value of each of the vector's 4 numbers) as a page."""
    label_ids, patterns, copies, values = zip(*rows, strict=True)
    spill.add(label_ids, patterns, copies, np.repeat(np.asarray(values, np.float32)[:, None], 4, axis=1))


def test_rows_come_back_by_pattern_in_label_and_copy_order(tmp_path):
    folder = tmp_path / "spill"
    folder.mkdir()
    with PatternSpill(folder, ["P1", "../../escape"], 4) as spill:
        add(spill, ("b", "P1", 1, 4.0), ("a", "../../escape", 0, 1.0), ("b", "P1", 0, 3.0))
        add(spill, ("a", "P1", 0, 2.0), ("z", "P9", 0, 9.0))
        ids, vectors = spill.rows("P1")
        assert ids == ["a", "b", "b"] and vectors[:, 0].tolist() == [2.0, 3.0, 4.0]
        assert spill.rows("../../escape")[0] == ["a"]
        assert spill.other == 1  # P9: not one of the bundle's patterns
    assert sorted(p.name for p in folder.iterdir()) == ["0.f32", "0.ids", "1.f32", "1.ids"]
    assert not (tmp_path / "escape").exists()


def test_a_pattern_with_no_rows_is_empty(tmp_path):
    with PatternSpill(tmp_path, ["P1"], 4) as spill:
        ids, vectors = spill.rows("P1")
    assert ids == [] and vectors.shape == (0, 4) and vectors.dtype == np.float32
