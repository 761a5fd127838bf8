"""Handheld photos of a label's window: the same shot as the whole photo, which the device
segments as well, and a bench photo cache that a killed run resumes from."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge_app.errors import PufError
from fabrication.sim.field_camera import JPEG_BLOCK_PX, WINDOW_MARGIN, capture_label
from tests.fabrication.pixels import green_correlation
from trainer.harness.bench.plan import BenchPlan
from trainer.simdata import SimSpec, device_templates, make_film, make_layout, segment_handheld

SPEC = SimSpec("HWT", film_seed=4343, field_cols=2, field_rows=1, microscope_shots=1, handheld_shots=0)


@pytest.fixture(scope="module")
def batch():
    layout = make_layout(SPEC)
    return layout, make_film(SPEC, layout)


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_the_window_is_the_whole_photos_part_and_a_shifted_part_is_not(batch, seed):
    """Tolerance: the window correlates with the same pixels of the whole photo at least
    0.99 (only the sensor noise's realisation is drawn apart, and JPEG smooths it; measured
    0.998-0.999), while those pixels moved by 2 px, as a misplaced window or film region
    would put them, fall below 0.95 (measured 0.83-0.88)."""
    layout, film = batch
    field, slot = divmod(seed, layout.labels_per_field)
    window, truth = capture_label(film, layout, field, slot, seed, window=True)
    whole, whole_truth = capture_label(film, layout, field, slot, seed)
    x0, y0, w, h = truth["window_px"]
    assert window.shape == (h, w, 3) and window.dtype == np.uint8
    assert x0 % JPEG_BLOCK_PX == 0 and y0 % JPEG_BLOCK_PX == 0  # on the whole photo's JPEG blocks
    assert w * h < 0.7 * whole.shape[0] * whole.shape[1]
    corners = np.array(truth["corners_px"])
    assert np.allclose(corners + (x0, y0), whole_truth["corners_px"], atol=0.011)
    margin = 0.9 * WINDOW_MARGIN * np.linalg.norm(corners - np.roll(corners, 1, 0), axis=1).mean()
    frame_h, frame_w = whole.shape[:2]  # film around the border, unless the frame ends first
    assert corners[:, 0].min() >= margin or x0 == 0
    assert corners[:, 1].min() >= margin or y0 == 0
    assert corners[:, 0].max() <= w - margin or x0 + w == frame_w
    assert corners[:, 1].max() <= h - margin or y0 + h == frame_h
    assert truth["jpeg_quality"] == whole_truth["jpeg_quality"]  # the same shot, drawn the same way
    same = whole[y0:y0 + h, x0:x0 + w]
    moved = np.roll(whole, (2, 2), (0, 1))[y0:y0 + h, x0:x0 + w]
    assert green_correlation(window, same) >= 0.99
    assert green_correlation(window[2:, 2:], moved[2:, 2:]) < 0.95
    assert abs(float(window[..., 1].mean()) - float(same[..., 1].mean())) < 3  # the light's share too


def test_the_device_finds_the_label_in_windows_as_in_whole_photos(batch):
    layout, film = batch
    templates = device_templates(layout)
    outcomes = {True: [], False: []}
    for slot in range(layout.labels_per_field):
        for window in (True, False):
            image, truth = capture_label(film, layout, 0, slot, 300 + slot, window=window)
            outcomes[window].append(segment_handheld(image, truth, layout, templates, SPEC.crop_size)[1])
    found = {window: outcomes[window].count("ok") for window in outcomes}
    assert found[True] >= layout.labels_per_field - 1
    assert found[True] >= found[False] - 1, outcomes


def test_the_window_is_deterministic_by_seed(batch):
    layout, film = batch
    a, truth = capture_label(film, layout, 1, 4, 7, window=True)
    b, again = capture_label(film, layout, 1, 4, 7, window=True)
    assert np.array_equal(a, b) and truth == again
    c, _ = capture_label(film, layout, 1, 4, 8, window=True)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_a_bench_plan_refuses_what_is_not_a_photo_kind():
    for bad in (2, -1, "yes"):
        with pytest.raises(PufError):
            BenchPlan(labels=12, whole_photos=bad)


CHILD = """
import sys
from pathlib import Path
from trainer.harness.bench.plan import BenchPlan, enrolled_batches
from trainer.harness.bench.queries import take_photos
from trainer.simdata import make_layout
plan = BenchPlan(labels=12, augmented=1, genuine=8, counterfeit=8, clones=0, workers=1)
ids = [make_layout(spec).label_id(*divmod(n, 12)) for spec, numbers in enrolled_batches(plan) for n in numbers]
photos = take_photos(plan, ids, Path(sys.argv[1]))
print(sum(len(p) for p in photos.values()), flush=True)
"""


def test_bench_photos_resume_after_kill_9(tmp_path):
    """A run killed with SIGKILL after a few photos: the re-run takes only the photos without
    a record, and every record and photo it returns is whole."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cache)], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(list(cache.glob("photos-*/*/*.json"))) < 3:
            assert child.poll() is None, "the first run ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    first = {p: p.stat().st_mtime_ns for p in cache.glob("photos-*/*/*.jpg") if p.with_suffix(".json").exists()}
    assert 3 <= len(first) < 16
    done = subprocess.run([sys.executable, "-c", CHILD, str(cache)], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.split()[-1] == "16"
    records = sorted(cache.glob("photos-*/*/*.json"))
    assert len(records) == 16
    for path, stamp in first.items():
        assert path.stat().st_mtime_ns == stamp  # taken once
    for record in records:
        photo = json.loads(record.read_text())
        image = cv2.imread(photo["path"])
        assert image is not None and image.shape[0] * image.shape[1] < 800 * 600  # label windows
        corners = np.array(photo["corners_px"])
        assert corners.min() > 0 and (corners.max(0) < image.shape[1::-1]).all()
