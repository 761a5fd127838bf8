"""The label size found from the photo alone (edge_app.label_size), and the border-edge
focus measure (edge_app.label_crop.Quality.sharpness) on sharp and blurred photos."""

import cv2
import numpy as np
import pytest

from edge_app.errors import PufError
from edge_app.label_size import estimate_label_px, parse_label_px
from edge_app.segment import segment
from edge_app.verify import CaptureLimits
from fabrication.blur import motion_blur
from tests.bundle_support import sim_batch


def true_side(truth: dict) -> float:
    corners = np.array(truth["corners_px"])
    return float(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).mean())


@pytest.mark.parametrize("scale", [0.2, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("slot, seed, turn", [(0, 3, 0), (5, 4, 1), (11, 5, 2)])
def test_the_label_size_is_found_at_any_scale_and_rotation(scale, slot, seed, turn):
    image, truth = sim_batch().handheld(0, slot, seed)  # any angle already; quarter turns on top
    image = np.rot90(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), turn)
    found = estimate_label_px(image)
    assert found is not None and abs(found / (true_side(truth) * scale) - 1) < 0.05


def test_a_factory_field_of_merged_rings_gives_its_label_size():
    from fabrication.calibration import StageCalibration
    from fabrication.sim.microscope import SimulatedMicroscope

    batch = sim_batch()
    calibration = StageCalibration((4000.0, -2500.0), 1.2)
    scope = SimulatedMicroscope(batch.film, batch.layout, calibration, seed=4)
    scope.move_to(*calibration.design_to_stage(*batch.layout.field_center_um(0)))
    image = scope.snap().image
    expected = batch.layout.label_size_um / scope.model.pixel_size_um
    found = estimate_label_px(image)
    assert found is not None and abs(found / expected - 1) < 0.05


def test_no_label_no_size():
    rng = np.random.default_rng(0)
    assert estimate_label_px(np.clip(rng.normal(60, 3, (600, 800, 3)), 0, 255).astype(np.uint8)) is None
    assert estimate_label_px(np.zeros((600, 800), np.uint8)) is None
    texture, _ = sim_batch().handheld(0, 0, 3)
    film = cv2.resize(texture[200:300, 300:400], (800, 600))  # film only, no border in view
    assert estimate_label_px(film) is None
    with pytest.raises(PufError, match="border fraction"):
        estimate_label_px(film, border_frac=0.4)
    with pytest.raises(PufError, match="image"):
        estimate_label_px("photo.png")


def test_a_label_size_given_by_a_user_is_auto_or_a_sensible_number_of_px():
    assert parse_label_px("auto") is None and parse_label_px(" AUTO ") is None and parse_label_px(None) is None
    assert parse_label_px("150") == 150.0 and parse_label_px(" 212.5") == 212.5 and parse_label_px(300) == 300.0
    assert parse_label_px("600", largest=600) == 600.0
    for text, why in (("big", "neither auto nor a number"), ("nan", "neither auto nor"), ("inf", "neither auto nor"),
                      ("", "neither auto nor"), (True, "neither auto nor"), ("0", "too small"),
                      ("-20", "too small"), ("15.9", "too small")):
        with pytest.raises(PufError, match=why):
            parse_label_px(text)
    with pytest.raises(PufError, match="does not fit in the 600 px photo"):
        parse_label_px("100000", largest=600)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_sharp_photos_pass_the_focus_gate_and_blurred_ones_do_not(scale):
    """At any magnification: blur of 1.3% of the label side (4 px at 300 px), or a smear of
    5%, is refused; the photo itself passes."""
    limit = CaptureLimits().min_sharpness
    for slot, seed in [(0, 1), (3, 2), (7, 3)]:
        image, truth = sim_batch().handheld(0, slot, seed)
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        side = true_side(truth) * scale
        for photo, sharp in [(image, True), (cv2.GaussianBlur(image, (0, 0), 0.013 * side), False),
                             (motion_blur(image, int(0.05 * side) | 1, 30.0 * slot), False)]:
            labels = segment(photo, side, k=1, size_tolerance=0.3, rotation_deg=None).labels
            assert labels or not sharp  # a label blurred beyond finding is refused too
            passed = bool(labels) and labels[0].quality.sharpness >= limit
            assert passed == sharp, (slot, seed, sharp, labels and labels[0].quality)


def test_focus_does_not_depend_on_the_film_texture():
    """The same photo with its film's texture smoothed away (the border kept) measures as
    sharp: a smooth film is not called blurred."""
    image, truth = sim_batch().handheld(0, 2, 3)
    side = true_side(truth)
    smooth = cv2.bilateralFilter(image, 9, 25, side * 0.02)
    before = segment(image, side, k=1, rotation_deg=None).labels[0].quality.sharpness
    after = segment(smooth, side, k=1, rotation_deg=None).labels[0].quality.sharpness
    assert after >= CaptureLimits().min_sharpness and abs(after / before - 1) < 0.25


def test_labels_with_closed_glyphs_on_a_coarse_film_are_found_in_every_whole_photo():
    """A factory's own glyphs have closed shapes (a kite, a key's ring) that look like small
    labels; on a coarse, low-contrast film the label's own ring can escape the size finder.
    Every photo that shows the whole label must still be cut (edge_app.verify.find_labels)."""
    from pathlib import Path

    from edge_app.layout import BatchLayout
    from edge_app.verify import find_labels
    from fabrication.pattern_import import load_pattern_set
    from fabrication.patterns import pattern_templates
    from fabrication.sim.field_camera import capture_label
    from fabrication.sim.film import EtchedFilm, FilmStyle
    from fabrication.sim.laser import engrave_layout

    glyphs = load_pattern_set(str(Path(__file__).resolve().parents[2] / "docs" / "examples" / "own_glyphs.svg"))
    layout = BatchLayout("OWN", tuple(glyphs.names), field_cols=1, field_rows=1, pattern_set=glyphs)
    film = EtchedFilm(7, style=FilmStyle.parse("coarse"))
    engrave_layout(film, layout, 128.0)
    templates = pattern_templates(glyphs, layout.glyph_size_um, layout.label_size_um)
    whole = 0
    for slot in range(12):
        for seed in (1, 2, 71):  # 71: the fish's closed body was once taken for the label
            image, truth = capture_label(film, layout, 0, slot, seed)
            corners = np.asarray(truth["corners_px"])
            height, width = image.shape[:2]
            if corners.min() < 0 or corners[:, 0].max() > width - 1 or corners[:, 1].max() > height - 1:
                continue  # cut by the photo's edge: a retake is the right answer
            whole += 1
            found = find_labels(image, CaptureLimits(), templates)
            centre = corners.mean(axis=0)
            assert any(np.linalg.norm(lb.corners.mean(axis=0) - centre) < 0.1 * true_side(truth)
                       for lb in found.labels), (glyphs.names[slot], seed)
    assert whole >= 24
