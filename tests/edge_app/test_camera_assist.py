"""The capture assist on simulated handheld photos, judged against the real verifier: what
the assist calls ready on the 640-px preview, verify reads from the still; what it calls
blurred, dark or bright, verify calls unreadable (in the clear cases: borderline photos may
go either way)."""

from dataclasses import replace

import numpy as np
import pytest

from edge_app.camera import CaptureAssist, assess, guide_box
from edge_app.camera.base import STILL_LABEL_PX, downscale, fit_still, still_size
from edge_app.errors import PufError
from edge_app.verify import CaptureLimits
from fabrication.sim.field_camera import FieldCameraModel, capture_label
from tests.bundle_support import sim_batch

MODEL = FieldCameraModel()
STEADY = replace(MODEL, motion_blur_px=(0.0, 0.5), defocus_px=(0.3, 0.6))
CASES = {  # the clear cases: (camera, what the assist must say)
    "sharp": (STEADY, "ok"),
    "defocused": (replace(MODEL, defocus_px=(4.0, 5.0)), "blurred"),
    "dark": (replace(STEADY, gain=(3.0, 6.0)), "dark"),
    "bright": (replace(STEADY, gain=(3000.0, 4000.0)), "bright"),
}
SEEDS = range(6)


def photo(camera: FieldCameraModel, seed: int) -> np.ndarray:
    batch = sim_batch()
    return capture_label(batch.film, batch.layout, 0, seed % 12, seed, camera)[0]


def preview_assist(image: np.ndarray) -> CaptureAssist:
    preview = downscale(image, 640)
    return assess(preview, guide_box(preview.shape[1], preview.shape[0]))


@pytest.mark.parametrize("case", CASES)
def test_the_assist_agrees_with_verify_on_clear_cases(verifier, case):
    camera, expected = CASES[case]
    for seed in SEEDS:
        image = photo(camera, seed)
        verdict = verifier.verify_image(image)[0]
        assist = preview_assist(image)
        assert assist.ready == (verdict.verdict != "unreadable"), (case, seed, assist, verdict.reason)
        if expected == "ok":
            assert assist.ready and assist.hint == "Ready"
        elif expected == "blurred":
            assert not assist.sharp and assist.exposure_state == "ok" and assist.hint.startswith("Out of focus")
        else:
            assert assist.exposure_state == expected and not assist.ready
            assert assist.hint.startswith("Too " + expected)


def test_a_hand_moving_during_the_shot_is_not_ready():
    """A 30-px smear blurs the border's sides across it (at 45 degrees, all four): the
    worst side, which verify judges, is refused."""
    for seed in SEEDS:
        moved = preview_assist(photo(replace(MODEL, motion_blur_px=(29.0, 31.0)), seed))
        still = preview_assist(photo(STEADY, seed))
        assert not moved.sharp and not moved.ready and moved.hint.endswith("hold steady")
        assert moved.sharpness < CaptureLimits().min_sharpness <= still.sharpness


def test_the_figures_follow_the_picture():
    sharp = preview_assist(photo(STEADY, 1))
    blurred = preview_assist(photo(replace(MODEL, defocus_px=(4.0, 5.0)), 1))
    dim = preview_assist(photo(replace(STEADY, gain=(40.0, 41.0)), 1))
    assert sharp.sharpness > 2 * blurred.sharpness
    assert dim.exposure < sharp.exposure and sharp.clipped == 0.0
    assert 0.0 <= sharp.clipped <= 1.0 and 0.0 <= sharp.exposure <= 255.0


def test_the_guide_box_is_where_a_label_is_the_size_verify_expects():
    limits = CaptureLimits()
    assert guide_box(800, 600) == (250, 150, 300, 300)  # the handheld photo verify is tuned for
    x, y, w, h = guide_box(640, 480)  # its preview
    assert w == h == round(STILL_LABEL_PX * 640 / 800) and (x + w / 2, y + h / 2) == (320, 240)
    # a live camera's still puts a label filling the box at STILL_LABEL_PX
    for sensor in [(4056, 3040), (1920, 1080), (4608, 2592), (800, 600)]:
        width, height = still_size(*sensor)
        assert guide_box(width, height)[2] == STILL_LABEL_PX and width % 2 == height % 2 == 0
        assert fit_still(np.zeros(sensor[::-1] + (3,), np.uint8)).shape == (height, width, 3)
    assert still_size(640, 480) == (640, 480)  # never enlarged
    # a label size fixed in Settings: the box is where such a label lies in the still, at most the frame
    assert guide_box(800, 600, STILL_LABEL_PX) == guide_box(800, 600)
    assert guide_box(800, 600, 150.0) == (325, 225, 150, 150)
    assert guide_box(640, 480, 150.0)[2] == round(150 * 640 / 800)
    assert guide_box(640, 480, 600.0) == (80, 0, 480, 480)
    # the simulated handheld camera's labels fit the box within verify's size tolerance
    batch = sim_batch()
    for seed in SEEDS:
        corners = np.array(capture_label(batch.film, batch.layout, 0, seed, seed)[1]["corners_px"])
        side = np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).mean()
        assert abs(side / STILL_LABEL_PX - 1) < limits.size_tolerance


def test_plain_frames():
    box = guide_box(640, 480)
    flat = assess(np.full((480, 640, 3), 120, np.uint8), box)
    assert flat.sharpness == 0.0 and not flat.sharp and flat.exposure_state == "ok"
    assert flat.hint == "Out of focus: hold steady"
    assert assess(np.zeros((480, 640), np.uint8)).exposure_state == "dark"  # grey, whole frame
    white = assess(np.full((480, 640, 3), 255, np.uint8), box)
    assert white.exposure_state == "bright" and white.clipped == 1.0 and white.hint.startswith("Too bright")
    # a box reaching past the frame is measured where it overlaps it
    assert assess(np.full((480, 640, 3), 255, np.uint8), (600, 440, 300, 300)).clipped == 1.0


@pytest.mark.parametrize("image, box, message", [
    (np.zeros((480, 640, 3), np.float32), None, "8-bit"),
    (np.zeros((480, 640, 3), np.uint8), (700, 10, 50, 50), "too little"),
    (np.zeros((480, 640, 3), np.uint8), (10, 10, 4, 4), "too little"),
])
def test_bad_input_is_a_clear_error(image, box, message):
    with pytest.raises(PufError, match=message):
        assess(image, box)
    with pytest.raises(PufError, match="too small"):
        guide_box(4, 480)
