import cv2
import numpy as np
import pytest

from edge_app.errors import PufError
from fabrication.patterns import pattern_by_name, pattern_classes


def raster(pattern) -> np.ndarray:
    image = np.zeros((64, 64), np.uint8)
    for stroke in pattern.strokes:
        points = np.round((np.array(stroke) * 48 + 32) * 4).astype(np.int32)
        cv2.polylines(image, [points], False, 255, 5, cv2.LINE_AA, shift=2)
    return image > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_44_distinct_classes_fit_the_unit_box():
    classes = pattern_classes()
    assert len(classes) == 44
    assert len({p.name for p in classes}) == 44
    for p in classes:
        points = np.concatenate([np.array(s) for s in p.strokes])
        assert np.abs(points).max() <= 0.5 + 1e-9
        assert np.ptp(points, axis=0).max() == pytest.approx(1.0)


def test_no_glyph_looks_the_same_after_a_rotation():
    """The etched pattern must fix a label's orientation: no glyph matches itself or
    another class rotated by 90, 180 or 270 degrees."""
    rasters = {p.name: raster(p) for p in pattern_classes()}
    for a, image_a in rasters.items():
        for b, image_b in rasters.items():
            for quarter in (1, 2, 3):
                assert iou(image_a, np.rot90(image_b, quarter)) < 0.8, (a, b, quarter)


def test_unknown_class_names_the_known_ones():
    with pytest.raises(PufError, match="unknown pattern class 'Z'.*zh_nian"):
        pattern_by_name("Z")
