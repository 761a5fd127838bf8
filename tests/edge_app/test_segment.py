"""Segmentation on the simulated factory: every whole label found, cut labels rejected,
through the faults real captures have; and the paper's method beside it.

The small simulated batches are `tests.segment_support`'s.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import edge_app.segment as segmentation
from edge_app.errors import PufError
from edge_app.segment import FoundLabel, SegmentationResult, as_uint8, crop_label, segment
from fabrication.calibration import StageCalibration
from fabrication.sim.field_camera import FieldCameraModel, capture_label
from fabrication.sim.microscope import MicroscopeModel, SimulatedMicroscope
from tests.segment_support import LABEL_PX, handheld, make_film, make_layout, snap, templates_for


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(a, b)
    union = cv2.contourArea(a) + cv2.contourArea(b) - inter
    return float(inter / union) if union > 0 else 0.0


def best_match(labels: list[FoundLabel], corners) -> tuple[float, FoundLabel | None]:
    scored = [(iou(corners, label.corners), label) for label in labels]
    return max(scored, key=lambda s: s[0], default=(0.0, None))


def check_against_truth(result: SegmentationResult, truth: dict, min_iou: float = 0.9,
                        corner_px: float = 4.0) -> None:
    """Every whole label found (IoU >= min_iou, corners in the right order); no crop of a
    label cut by the edge; nothing found where no label is."""
    matched = set()
    for label in truth["labels"]:
        score, found = best_match(result.labels, label["corners_px"])
        if label["whole"]:
            assert score >= min_iou, f"{label['label_id']} found with IoU {score:.3f}"
            # TL first: the corners correspond one to one
            assert np.abs(found.corners - np.array(label["corners_px"])).max() < corner_px
            matched.add(id(found))
        else:
            assert score < 0.3, f"{label['label_id']} is cut by the edge but was cropped"
    assert len(matched) == len(result.labels), "a label was found where there is none"


# ---- factory fields -------------------------------------------------------------------

@pytest.mark.parametrize("field", [0, 4])
def test_fast_finds_every_whole_label_of_a_field(field: int) -> None:
    image, truth = snap(make_layout(), field)
    result = segment(image, LABEL_PX)
    check_against_truth(result, truth, min_iou=0.97)
    assert len(result.labels) == sum(label["whole"] for label in truth["labels"])
    for label in result.labels:
        assert label.crop.shape == (128, 128, 3) and label.crop.dtype == np.uint8
        assert label.orientation == "prior"
        q = label.quality
        assert q.border_contrast > 0.5 and 0.95 < q.size_ratio < 1.05 and q.skew_deg < 2
        assert q.edge_rms_px is not None and q.edge_rms_px < 1.5 and q.clipped < 0.01
    # the labels cut by the field's edge are told apart, not silently dropped
    assert any(r.reason == "edge" for r in result.rejections)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_labels_cut_by_a_slipped_stage_are_rejected(seed: int) -> None:
    image, truth = snap(make_layout(), 4, seed=seed, slip=1.0)
    offset = np.hypot(*truth["stage_error_um"])
    assert offset > 50, "the simulator should have slipped"
    result = segment(image, LABEL_PX)
    check_against_truth(result, truth)
    assert any(r.reason == "edge" for r in result.rejections)


def test_uneven_excitation_and_dust() -> None:
    image, truth = snap(make_layout(), 1)
    h, w = image.shape[:2]
    # excitation falling to a fifth across the field, and a darker corner
    ramp = np.linspace(1.0, 0.2, w, dtype=np.float32)[None, :] * np.linspace(1.0, 0.7, h)[:, None]
    dim = (image * ramp[:, :, None]).astype(np.uint8)
    rng = np.random.default_rng(5)
    for label in truth["labels"]:  # dust on every border: specks and a fibre across it
        tl, tr = np.array(label["corners_px"][0]), np.array(label["corners_px"][1])
        for _ in range(3):
            centre = tl + (tr - tl) * rng.uniform(0.2, 0.8)
            cv2.circle(dim, tuple(int(v) for v in centre), int(rng.integers(4, 12)), (0, 0, 0), -1)
        start = tl + (tr - tl) * 0.5 + (0, -40)
        cv2.line(dim, tuple(int(v) for v in start), tuple(int(v) for v in start + (25, 90)),
                 (5, 12, 3), 3, cv2.LINE_AA)
    # the far corner is lit at 14%: its film is about as bright as the border elsewhere
    check_against_truth(segment(dim, LABEL_PX), truth, min_iou=0.95, corner_px=6.0)


def test_fewer_labels_than_expected() -> None:
    layout = make_layout()
    blank = (2, 5, 6, 11)  # field 0's labels that were never etched
    image, truth = snap(layout, 0, blank=blank)
    result = segment(image, LABEL_PX)
    present = {"labels": [label for label in truth["labels"]
                          if not (label["field"] == 0 and label["slot"] in blank)]}
    check_against_truth(result, present)
    assert len(result.labels) == 8


def test_neighbours_whose_borders_nearly_touch() -> None:
    layout = make_layout("NEAR", 2, 2, pitch_um=206.0)  # 6 um of film between borders
    image, truth = snap(layout, 0)
    result = segment(image, LABEL_PX, k=40)
    check_against_truth(result, truth)
    assert len(result.labels) == sum(label["whole"] for label in truth["labels"]) == 12


def test_known_rotation_orders_the_corners() -> None:
    """A chip placed at 30 degrees: corners still start at the label's own top-left."""
    layout = make_layout()
    model = MicroscopeModel(slip_probability=0.0)
    calibration = StageCalibration((5000.0, 3000.0), 30.0, 1.0)
    microscope = SimulatedMicroscope(make_film(layout), layout, calibration, 4, model)
    microscope.move_to(*calibration.design_to_stage(*layout.field_center_um(4)))
    shot = microscope.snap()
    result = segment(shot.image, LABEL_PX, rotation_deg=30.0)
    check_against_truth(result, shot.truth)
    assert all(abs(label.angle_deg - 30.0) < 3 for label in result.labels)


def test_crops_are_the_labels_in_design_orientation() -> None:
    layout = make_layout()
    templates = templates_for(layout)
    image, truth = snap(layout, 3)
    result = segment(image, LABEL_PX, templates=templates)
    assert result.labels
    for label in result.labels:
        _, true = max(((iou(t["corners_px"], label.corners), t) for t in truth["labels"]),
                      key=lambda s: s[0])
        assert label.glyph.pattern == true["pattern"] and label.glyph.quarter_turns == 0
        assert label.orientation == "prior"


def test_pixel_types_and_channels_give_the_same_labels() -> None:
    image, truth = snap(make_layout(), 2)
    reference = segment(image, LABEL_PX)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    variants = {
        "gray": gray,
        "gray (H, W, 1)": gray[:, :, None],
        "BGRA": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
        "16-bit": image.astype(np.uint16) * 256,
        "12-bit in 16": image.astype(np.uint16) * 16,
        "float 0-1": image.astype(np.float32) / 255,
        "non-contiguous": np.ascontiguousarray(image[:, ::-1])[:, ::-1],
    }
    for name, variant in variants.items():
        result = segment(variant, LABEL_PX)
        assert len(result.labels) == len(reference.labels), name
        for found, ref in zip(result.labels, reference.labels, strict=True):
            assert np.abs(found.corners - ref.corners).max() < 1.0, name
    assert segment(gray, LABEL_PX).labels[0].crop.shape == (128, 128)


# ---- handheld photos ------------------------------------------------------------------

@pytest.mark.parametrize("i", range(6))
def test_a_handheld_photo_of_one_label_at_any_rotation(i: int) -> None:
    layout = make_layout()
    templates = templates_for(layout)
    field, slot = i % layout.fields_per_batch, (5 * i) % 12
    image, truth = handheld(layout, field, slot, seed=40 + i)
    result = segment(image, 200 / 0.675, k=1, size_tolerance=0.3, rotation_deg=None,
                     templates=templates)
    assert len(result.labels) == 1
    label = result.labels[0]
    assert iou(label.corners, truth["corners_px"]) > 0.9
    assert label.orientation == "glyph" and label.glyph.pattern == truth["pattern"]
    # canonical: the crop's first corner is the label's own top-left, wherever it was
    assert np.abs(label.corners - np.array(truth["corners_px"])).max() < 6.0
    turned = segment(image, 200 / 0.675, k=1, size_tolerance=0.3, rotation_deg=None)
    assert turned.labels[0].orientation == "unknown"


@pytest.mark.parametrize("i", range(3))
def test_a_label_filling_a_handheld_photo(i: int) -> None:
    """The camera held close: the label is 450-480 px of a 600 px high photo."""
    layout = make_layout()
    close = FieldCameraModel(pixel_size_um=(0.42, 0.45), rotation_deg=(-18.0, 18.0), offset_frac=0.05)
    image, truth = capture_label(make_film(layout), layout, i, i, 70 + i, close)
    result = segment(image, 200 / 0.435, k=1, size_tolerance=0.2, rotation_deg=None,
                     templates=templates_for(layout))
    assert len(result.labels) == 1 and iou(result.labels[0].corners, truth["corners_px"]) > 0.95
    assert result.labels[0].glyph.pattern == truth["pattern"]
    assert np.abs(result.labels[0].corners - np.array(truth["corners_px"])).max() < 6.0


def test_a_handheld_crop_in_canonical_orientation_matches_the_factory_crop() -> None:
    layout = make_layout()
    templates = templates_for(layout)
    image, truth = snap(layout, 0)
    factory = segment(image, LABEL_PX)
    photo, photo_truth = handheld(layout, 0, 5, seed=41)
    device = segment(photo, 200 / 0.675, k=1, size_tolerance=0.3, rotation_deg=None,
                     templates=templates).labels[0]
    label = next(t for t in truth["labels"] if t["label_id"] == photo_truth["label_id"])
    _, enrolled = best_match(factory.labels, label["corners_px"])

    def texture(crop: np.ndarray) -> np.ndarray:
        green = cv2.GaussianBlur(crop[16:-16, 16:-16, 1].astype(np.float32), (0, 0), 1.5)
        return (green - green.mean()) / green.std()

    same = float((texture(enrolled.crop) * texture(device.crop)).mean())
    turned = float((texture(enrolled.crop) * texture(np.rot90(device.crop))).mean())
    assert same > 0.5 > turned + 0.3


# ---- the paper's method ---------------------------------------------------------------

def test_the_papers_method_keeps_k_contours_and_checks_nothing() -> None:
    image, _ = snap(make_layout(), 4)
    result = segment(image, LABEL_PX, method="paper", k=12)
    assert 0 < len(result.labels) <= 12
    assert not result.rejections
    assert all(label.crop.shape == (128, 128, 3) for label in result.labels)


# ---- what is not a field --------------------------------------------------------------

def test_blank_and_small_images_give_an_empty_result_with_a_note() -> None:
    for image in (np.zeros((1440, 1920, 3), np.uint8), np.full((600, 800), 77, np.uint8)):
        for method in ("fast", "paper"):
            result = segment(image, LABEL_PX, method=method)
            assert result.labels == []
    assert "blank" in segment(np.zeros((600, 800), np.uint8), LABEL_PX).notes[0]
    assert "smaller than one label" in segment(np.zeros((90, 90), np.uint8), LABEL_PX).notes[0]


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 10), np.uint8), "empty"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 4, 4), np.uint8), "shape"),
    (np.zeros((10, 10), np.int32), "pixel type"),
    (np.zeros((10, 10), bool), "pixel type"),
    (np.full((10, 10), np.nan, np.float32), "not numbers"),
    ([[1, 2], [3, 4]], "image array"),
])
def test_what_is_not_an_image_is_refused_in_words(image, message: str) -> None:
    with pytest.raises(PufError, match=message):
        segment(image, LABEL_PX)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "sobel"}, "unknown segmentation method"),
    ({"expected_label_px": float("nan")}, "label size"),
    ({"k": 0}, "k must be"),
    ({"crop_size": 8}, "crop size"),
    ({"border_frac": 0.3}, "border fraction"),
    ({"rotation_deg": float("inf")}, "rotation"),
])
def test_bad_parameters_are_refused_in_words(kwargs: dict, message: str) -> None:
    args = {"expected_label_px": LABEL_PX, **kwargs}
    with pytest.raises(PufError, match=message):
        segment(np.zeros((100, 100), np.uint8), **args)


def test_as_uint8_scales_deep_images() -> None:
    twelve_bit = np.array([[0, 4095]], np.uint16)
    assert as_uint8(twelve_bit).tolist() == [[0, 255]]
    assert as_uint8(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]
    assert as_uint8(np.array([[0.0, 300.0]])).tolist() == [[0, 255]]


def test_crop_label_cuts_what_segmentation_cuts() -> None:
    image, _ = snap(make_layout(), 2)
    small = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    for picture, label_px in ((image, LABEL_PX), (small, LABEL_PX / 2)):  # 2x the crop, and less
        labels = segment(picture, label_px).labels
        assert labels
        for label in labels:  # the same up to the warp's rounding
            difference = np.abs(crop_label(picture, label.corners).astype(int) - label.crop)
            assert difference.max() <= 3 and (difference > 0).mean() < 0.001


def _drawn_ring(dust: bool) -> np.ndarray:
    """An 800x600 photo of one label ring (side 300 px, turned 10 degrees), its border dark and
    even; with `dust`, a light speck bites into the middle of its top side."""
    image = np.full((600, 800, 3), 160, np.uint8)
    turn = np.radians(10.0)
    unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) @ np.array([[np.cos(turn), np.sin(turn)],
                                                                      [-np.sin(turn), np.cos(turn)]])
    for side, level in ((300.0, 30), (270.0, 170)):
        corners = np.round(((400.3, 300.7) + unit * side / 2) * 16).astype(np.int32)
        cv2.fillPoly(image, [corners], (level,) * 3, cv2.LINE_AA, shift=4)
    if dust:  # on the outer edge, a third of the way along the top side
        speck = (400.3, 300.7) + (unit[0] * 2 + unit[1]) / 3 * 150.0
        cv2.circle(image, tuple(int(v) for v in np.round(speck)), 6, (170,) * 3, -1)
    return cv2.GaussianBlur(image, (0, 0), 1.0)


def test_refinement_fits_an_even_border_once_and_drops_dust(monkeypatch) -> None:
    """A side's edge points are fitted again only while the last fit dropped some: an even
    border keeps them all, so one fit is the answer (the refits gave it bit for bit); dust on
    the border is dropped by a refit and does not move the line."""
    fits = []
    fit_lines = segmentation._fit_lines
    monkeypatch.setattr(segmentation, "_fit_lines", lambda *args: fits.append(1) or fit_lines(*args))
    clean = segment(_drawn_ring(dust=False), 300.0, k=1, size_tolerance=0.3, rotation_deg=None).labels
    assert len(clean) == 1 and len(fits) == 1
    fits.clear()
    dusty = segment(_drawn_ring(dust=True), 300.0, k=1, size_tolerance=0.3, rotation_deg=None).labels
    assert len(dusty) == 1 and len(fits) >= 2
    assert np.abs(dusty[0].corners - clean[0].corners).max() < 0.05
