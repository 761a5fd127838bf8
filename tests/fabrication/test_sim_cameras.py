import cv2
import numpy as np
import pytest

from edge_app.layout import BatchLayout
from fabrication.calibration import StageCalibration
from fabrication.patterns import pattern_names
from fabrication.sim.field_camera import capture_label
from fabrication.sim.film import EtchedFilm
from fabrication.sim.laser import engrave_layout
from fabrication.sim.microscope import MicroscopeModel, SimulatedMicroscope

CALIBRATION = StageCalibration((4000.0, -2500.0), 1.2)


@pytest.fixture(scope="module")
def batch():
    names = pattern_names()
    layout = BatchLayout("S1", tuple(names[i % 44] for i in range(48)), field_cols=2, field_rows=2)
    film = EtchedFilm(21)
    engrave_layout(film, layout, 128.0)
    return layout, film


def border_contrast(image: np.ndarray, corners: list, border_frac: float) -> float:
    """Mean green on the true border line over mean green just inside it."""
    green = image[:, :, 1].astype(np.float32) if image.ndim == 3 else image.astype(np.float32)
    quad = np.array(corners, np.float32)
    centre = quad.mean(0)
    on_border = np.zeros(green.shape, np.uint8)
    inside = np.zeros(green.shape, np.uint8)
    for frac, mask in ((border_frac / 2, on_border), (border_frac * 2.5, inside)):
        ring = centre + (quad - centre) * (1 - 2 * frac)
        cv2.polylines(mask, [np.round(ring).astype(np.int32)], True, 1, 3)
    return green[on_border > 0].mean() / green[inside > 0].mean()


def snap_field(layout, film, field, seed=4, model=None):
    microscope = SimulatedMicroscope(film, layout, CALIBRATION, seed=seed, model=model or MicroscopeModel())
    microscope.move_to(*CALIBRATION.design_to_stage(*layout.field_center_um(field)))
    return microscope.snap()


def test_field_truth_puts_every_label_where_its_border_is(batch):
    layout, film = batch
    snap = snap_field(layout, film, 3)
    assert snap.image.shape == (1440, 1920, 3) and snap.image.dtype == np.uint8
    whole = [label for label in snap.truth["labels"] if label["whole"]]
    assert {label["label_id"] for label in whole} == {layout.label_id(3, s) for s in range(12)}
    for label in whole:
        assert border_contrast(snap.image, label["corners_px"], 0.05) < 0.35, label["label_id"]
        assert label["pattern"] == layout.pattern_of(3, label["slot"])
    b, g, r = snap.image.reshape(-1, 3).mean(0)
    assert g > 2 * b > 2 * r  # green fluorescence


def test_snaps_are_reproducible_and_faults_vary(batch):
    layout, film = batch
    first = snap_field(layout, film, 0)
    again = snap_field(layout, film, 0)
    np.testing.assert_array_equal(first.image, again.image)
    other = snap_field(layout, film, 0, seed=5)
    assert other.truth["stage_error_um"] != first.truth["stage_error_um"]
    corners = np.array(first.truth["labels"][0]["corners_px"])
    angle = np.degrees(np.arctan2(*(corners[1] - corners[0])[::-1]))
    assert abs(angle + CALIBRATION.rotation_deg) <= 2.0 + 1e-6  # stage rotation within +-2 deg


def test_slips_cut_labels_at_the_edge_and_truth_says_so(batch):
    layout, film = batch
    cut = 0
    for field in range(4):
        snap = snap_field(layout, film, field, model=MicroscopeModel(slip_probability=1.0))
        for label in snap.truth["labels"]:
            xs, ys = np.array(label["corners_px"]).T
            inside = xs.min() >= 0 and ys.min() >= 0 and xs.max() <= 1919 and ys.max() <= 1439
            assert label["whole"] == inside
            cut += not inside
        assert np.hypot(*snap.truth["stage_error_um"]) > 50
    assert cut > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_handheld_capture_fills_the_photo_at_any_angle(batch, seed):
    layout, film = batch
    image, truth = capture_label(film, layout, 1, 7, seed)
    assert image.shape == (600, 800, 3)
    corners = np.array(truth["corners_px"])
    side = np.linalg.norm(corners[1] - corners[0])
    assert 230 < side < 380
    assert corners.min() > 0 and corners[:, 0].max() < 800 and corners[:, 1].max() < 600
    assert border_contrast(image, truth["corners_px"], 0.05) < 0.5
    assert truth["label_id"] == layout.label_id(1, 7)


def test_handheld_captures_differ_but_show_the_same_texture(batch):
    layout, film = batch
    a, truth_a = capture_label(film, layout, 0, 2, seed=1)
    b, truth_b = capture_label(film, layout, 0, 2, seed=2)
    c, truth_c = capture_label(film, layout, 0, 3, seed=1)

    def canonical(image, truth):
        square = np.array([[0, 0], [255, 0], [255, 255], [0, 255]], np.float32)
        warp = cv2.getPerspectiveTransform(np.array(truth["corners_px"], np.float32), square)
        patch = cv2.warpPerspective(image[:, :, 1], warp, (256, 256))[40:216, 40:216].astype(np.float32)
        patch = cv2.GaussianBlur(patch, (0, 0), 1.5)
        return (patch - patch.mean()) / patch.std()

    same = (canonical(a, truth_a) * canonical(b, truth_b)).mean()
    different = (canonical(a, truth_a) * canonical(c, truth_c)).mean()
    assert same > 0.5 > different + 0.2
