"""`puf bench --scaling`'s pictures: time, memory and recall each on a chart of its own unit,
never ms and MB on one axis."""

import cv2

from trainer.harness.bench import scaling


def row(n: int, ms: float, mb: float, recall: float) -> dict:
    return {"n": n, "shard": {"ms": ms / 40}, "whole": {"ms": ms, "exact_ms": ms * 20, "file_mb": mb,
                                                          "rss_mb": mb * 0.9, "recall_genuine": recall}}


def test_one_chart_a_unit(tmp_path):
    result = {"threads": 2, "rows": [row(10_000, 0.03, 3, 1.0), row(100_000, 0.6, 28, 0.993),
                                     row(1_000_000, 2.7, 268, 0.987)]}
    paths = scaling.pictures(result, tmp_path / "figures")
    assert [p.name for p in paths] == ["scaling_ms.png", "scaling_mb.png", "scaling_recall.png"]
    for path in paths:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[:2] == (560, 900)
