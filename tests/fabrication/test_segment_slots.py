"""Slot assignment: every label gets the right id, or none; never a wrong one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_app.layout import BatchLayout
from edge_app.segment import segment
from fabrication.segmentation.slots import assign_slots, slot_corners_um
from tests.segment_support import LABEL_PX, PIXEL_UM, make_layout, snap, templates_for

IMAGE = (1920, 1440)
SHIFT_ERROR_UM = 3.0  # how far the measured shift may lie from the true one, at 2 px noise


def lattice_view(layout: BatchLayout, field: int, shift_um, angle_deg: float):
    """Centres (image px) and ids of the labels lying whole in a view of `field` whose
    stage landed `shift_um` off: what segmentation would find."""
    angle = math.radians(angle_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array(layout.field_center_um(field)) + shift_um
    middle = np.array([(IMAGE[0] - 1) / 2, (IMAGE[1] - 1) / 2])
    centres, ids = [], []
    for f in range(layout.fields_per_batch):
        for slot in range(layout.labels_per_field):
            corners = middle + (slot_corners_um(layout, f, slot) - centre) @ rotation.T / PIXEL_UM
            if corners.min() >= 0 and corners[:, 0].max() <= IMAGE[0] - 1 \
                    and corners[:, 1].max() <= IMAGE[1] - 1:
                centres.append(tuple(corners.mean(axis=0)))
                ids.append(layout.label_id(f, slot))
    return centres, ids


@settings(max_examples=150, deadline=None)
@given(field=st.integers(0, 5), dx=st.floats(-215, 215), dy=st.floats(-215, 215),
       angle=st.floats(-2.5, 2.5), glyphs=st.booleans(), noise=st.floats(0, 2))
def test_ids_are_right_or_withheld_never_wrong(field, dx, dy, angle, glyphs, noise) -> None:
    """Whenever the field lies within MAX_SHIFT_UM (220) of its planned place."""
    layout = make_layout()
    centres, ids = lattice_view(layout, field, (dx, dy), angle)
    rng = np.random.default_rng(int(abs(dx * 1000)) % 2**32)
    centres = [tuple(np.add(c, rng.normal(0, noise, 2))) for c in centres]
    patterns = [layout.patterns[layout.label_index(int(i[3:7]), int(i[8:]))] for i in ids] \
        if glyphs else None
    result = assign_slots(centres, [angle] * len(centres), layout, field, PIXEL_UM, IMAGE, patterns)
    if not centres:
        assert result.status == "empty"
        return
    if result.status == "ok":
        assert [s.label_id for s in result.slots] == ids
        assert np.allclose(result.shift_um, (dx, dy), atol=SHIFT_ERROR_UM)
        assert result.reasons == [None if s.field == field else "neighbour" for s in result.slots]
    else:
        assert result.status == "ambiguous" and all(s is None for s in result.slots)
    # near its planned place a field is always placed (the shift is measured to within
    # SHIFT_ERROR_UM, so a field that far inside the bound may still read as outside it);
    # with glyphs, always
    if glyphs or max(abs(dx), abs(dy)) < 250 - 220 - SHIFT_ERROR_UM:
        assert result.status == "ok"


def test_a_label_where_the_batch_has_none_rules_an_offset_out() -> None:
    """Field 0 is the batch's top-left corner: after a slip of 100 um right and down its
    first column and row are still whole in view, and the other offset within reach
    would put them where the batch has no labels, so without glyphs the ids are known."""
    layout = make_layout()
    centres, ids = lattice_view(layout, 0, (100.0, 80.0), 0.5)
    result = assign_slots(centres, [0.5] * len(centres), layout, 0, PIXEL_UM, IMAGE)
    assert result.status == "ok" and [s.label_id for s in result.slots] == ids


def test_glyphs_that_disagree_with_the_layout_withhold_the_ids() -> None:
    layout = make_layout()
    centres, ids = lattice_view(layout, 4, (3.0, -2.0), 0.0)
    wrong = ["star"] * len(centres)  # what a field of another batch would show
    result = assign_slots(centres, [0.0] * len(centres), layout, 4, PIXEL_UM, IMAGE, wrong)
    assert result.status == "ambiguous" and "glyphs" in result.detail


def test_off_lattice_detections_get_no_slot() -> None:
    layout = make_layout()
    centres, ids = lattice_view(layout, 4, (0.0, 0.0), 0.0)
    centres.append((centres[0][0] + 200.0, centres[0][1] + 210.0))  # half a pitch off
    result = assign_slots(centres, [0.0] * len(centres), layout, 4, PIXEL_UM, IMAGE)
    assert result.status == "ok" and result.slots[-1] is None
    assert result.reasons[-1] == "off-lattice"


def test_expected_slots_project_onto_the_image() -> None:
    layout = make_layout()
    image, truth = snap(layout, 4)
    found = segment(image, LABEL_PX).labels
    result = assign_slots([f.centre for f in found], [f.angle_deg for f in found], layout, 4,
                          PIXEL_UM, IMAGE)
    for label in truth["labels"]:
        projected = result.to_image(slot_corners_um(layout, label["field"], label["slot"]))
        assert np.abs(projected - np.array(label["corners_px"])).max() < 4.0


@pytest.mark.parametrize("seed", [1, 2, 3, 5])
def test_slipped_fields_on_simulated_images(seed: int) -> None:
    layout = make_layout()
    image, truth = snap(layout, 4, seed=seed, slip=1.0)
    where = {t["label_id"]: np.mean(t["corners_px"], axis=0) for t in truth["labels"]}
    for templates in (None, templates_for(layout)):
        found = segment(image, LABEL_PX, templates=templates).labels
        patterns = None if templates is None else [f.glyph.pattern for f in found]
        result = assign_slots([f.centre for f in found], [f.angle_deg for f in found], layout, 4,
                              PIXEL_UM, IMAGE, patterns)
        if templates is not None:
            assert result.status == "ok"
        for label, place in zip(found, result.slots, strict=True):
            if place is not None:
                assert np.linalg.norm(where[place.label_id] - label.centre) < 10


def test_a_stage_that_reports_where_it_went_settles_a_slip() -> None:
    layout = make_layout()
    centres, ids = lattice_view(layout, 4, (130.0, -120.0), 0.3)
    unsure = assign_slots(centres, [0.3] * len(centres), layout, 4, PIXEL_UM, IMAGE)
    assert unsure.status == "ambiguous"
    told = assign_slots(centres, [0.3] * len(centres), layout, 4, PIXEL_UM, IMAGE,
                        max_shift_um=60.0, expected_shift_um=(128.0, -125.0))
    assert told.status == "ok" and [s.label_id for s in told.slots] == ids
