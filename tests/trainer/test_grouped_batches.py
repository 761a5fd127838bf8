"""Grouped training batches: a few patterns' labels side by side (trainer.data.grouped_batches)."""

from collections import Counter

import numpy as np
import pytest

from edge_app.errors import PufError
from trainer.data import CropArrays, Grouping, grouped_batches


def _crops(captures_by_label: list[int], pattern_of_label: list[int]) -> CropArrays:
    labels = np.repeat(np.arange(len(captures_by_label)), captures_by_label).astype(np.int32)
    patterns = np.array(pattern_of_label, np.int32)[labels]
    return CropArrays(np.zeros((len(labels), 4, 4, 3), np.uint8), labels, patterns,
                      [f"c{i}" for i in range(len(labels))], [f"L{i}" for i in range(len(captures_by_label))])


def test_a_batch_holds_a_few_patterns_and_a_few_captures_of_each_label():
    rng = np.random.default_rng(0)
    crops = _crops([4] * 120, [i % 6 for i in range(120)])  # 6 patterns, 20 labels each
    stream = grouped_batches(crops, 32, Grouping(patterns=2, per_label=2), rng)
    seen_patterns = Counter()
    for _ in range(200):
        batch = next(stream)
        assert batch.shape == (32,) and len(set(batch.tolist())) == 32  # no crop twice
        by_pattern = Counter(crops.pattern[batch].tolist())
        assert sorted(by_pattern.values()) == [16, 16]  # two patterns, half the batch each
        assert set(Counter(crops.label[batch].tolist()).values()) == {2}  # pairs of one label
        seen_patterns.update(by_pattern)
    assert set(seen_patterns) == set(range(6))  # every pattern comes round


def test_a_pattern_with_few_labels_fills_its_share_with_their_other_captures():
    crops = _crops([3, 3, 40, 40], [0, 0, 1, 1])
    stream = grouped_batches(crops, 12, Grouping(patterns=2, per_label=2), np.random.default_rng(1))
    for _ in range(50):
        batch = next(stream)
        small = [i for i in batch.tolist() if crops.pattern[i] == 0]
        assert len(small) == 6 and len(set(small)) == 6  # all six captures of pattern 0's two labels


def test_more_patterns_asked_than_there_are_takes_them_all():
    crops = _crops([2] * 6, [0, 0, 0, 1, 1, 1])
    batch = next(grouped_batches(crops, 8, Grouping(patterns=5, per_label=1), np.random.default_rng(2)))
    assert Counter(crops.pattern[batch].tolist()) == {0: 4, 1: 4}


@pytest.mark.parametrize("grouping", [Grouping(0, 2), Grouping(2, 0)])
def test_a_grouping_without_patterns_or_captures_is_refused(grouping):
    with pytest.raises(PufError, match="grouped batch"):
        next(grouped_batches(_crops([2, 2], [0, 1]), 4, grouping, np.random.default_rng(0)))


def test_a_label_limit_takes_labels_from_every_batch():
    from trainer.train import spread

    ids = [f"B{batch}-{field:02d}-{slot:02d}" for batch in range(1, 5) for field in range(10) for slot in range(12)]
    chosen = spread(ids, 40)
    assert len(set(chosen)) == 40 and chosen == sorted(chosen)
    assert {label.split("-")[0] for label in chosen} == {"B1", "B2", "B3", "B4"}
    assert [sum(label.startswith(f"B{b}-") for label in chosen) for b in range(1, 5)] == [10, 10, 10, 10]
    assert spread(ids[:7], 40) == ids[:7]
