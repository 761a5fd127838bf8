"""Fast label crops: the same thing as crops cut from a rendered field, the same every
time, and a cache that a killed run resumes from."""

import subprocess
import sys

import numpy as np
import pytest

from edge_app.errors import PufError
from fabrication.sim.label_render import (
    _window_light,
    crop_from_corners,
    field_crops,
    jittered,
    label_crops,
    pixels_read,
    render_fields,
)
from fabrication.sim.microscope import image_to_design
from fabrication.sim.optics import Exposure, illumination_at
from tests.fabrication.pixels import green_correlation
from trainer.simdata import SimSpec, field_captures, make_film, make_layout

SPEC = SimSpec("LRT", film_seed=4242, field_cols=2, field_rows=2, microscope_shots=2, handheld_shots=0)


@pytest.fixture(scope="module")
def batch():
    layout = make_layout(SPEC)
    return layout, make_film(SPEC, layout)


def test_fast_crop_agrees_with_the_field_cut_within_the_simulators_noise(batch):
    """Tolerance: a fast crop correlates with the field's cut of the same label (green
    channel, median over a field's labels) at least 0.85, and no more than 0.05 below
    two field captures of that label with each other; and better with its own label's cut
    than with any other label's of the field (they share the etched border), so a crop of
    the wrong spot fails."""
    layout, film = batch
    cut: dict[str, dict[str, np.ndarray]] = {}
    for label_id, shot, crop in field_captures(SPEC, layout, film, 0):
        cut.setdefault(label_id, {})[shot] = crop
    slots = [s for s in range(layout.labels_per_field) if len(cut.get(layout.label_id(0, s), {})) == 2]
    assert len(slots) >= 8
    same, noise = [], []
    for slot in slots:
        fast = label_crops(film, layout, 0, slot, seed=0)[0]
        field = cut[layout.label_id(0, slot)]
        assert fast.shape == field["m0"].shape and fast.dtype == np.uint8
        same.append(green_correlation(fast, field["m0"]))
        noise.append(green_correlation(field["m1"], field["m0"]))
        others = [green_correlation(fast, cut[layout.label_id(0, s)]["m0"]) for s in slots if s != slot]
        assert same[-1] > max(others), layout.label_id(0, slot)
        assert abs(float(fast[..., 1].mean()) - float(field["m0"][..., 1].mean())) < 40  # exposure varies +-30%
    assert np.median(same) >= 0.85
    assert np.median(same) >= np.median(noise) - 0.05


def test_crops_are_deterministic_by_seed(batch):
    layout, film = batch
    first = label_crops(film, layout, 1, 3, seed=5, shots=2)
    assert np.array_equal(first, label_crops(film, layout, 1, 3, seed=5, shots=2))
    assert not np.array_equal(first[0], first[1])  # two captures: new exposure and noise
    assert not np.array_equal(first, label_crops(film, layout, 1, 3, seed=6, shots=2))
    assert green_correlation(first[0], label_crops(film, layout, 1, 3, seed=6)[0]) > 0.8  # the same label


def test_cache_resumes_after_a_kill_with_no_half_written_file(batch, tmp_path):
    layout, film = batch
    folder = tmp_path / "cache"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fabrication.sim.label_render import render_fields\n"
        "from trainer.simdata import SimSpec, make_film, make_layout\n"
        f"spec = SimSpec('LRT', film_seed={SPEC.film_seed}, field_cols=2, field_rows=2)\n"
        "layout = make_layout(spec)\n"
        "render_fields(make_film(spec, layout), layout, range(4), 0, 2, Path(sys.argv[1]),\n"
        "              done=lambda field: print('done', field, flush=True))\n"
        "print('finished', flush=True)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().split() == ["done", "0"]
            assert child.stdout.readline().split() == ["done", "1"]
        finally:
            child.kill()  # in the middle of field 2
    kept = {p.name: p.read_bytes() for p in folder.glob("*.npz") if not p.name.endswith(".tmp.npz")}
    assert 2 <= len(kept) < 4
    for name in kept:
        with np.load(folder / name) as data:
            assert data["crops"].shape == (layout.labels_per_field, 2, 128, 128, 3)

    ids, crops = render_fields(film, layout, range(4), 0, 2, folder)
    assert len(ids) == len(crops) == 4 * layout.labels_per_field
    final = sorted(p.name for p in folder.iterdir())
    assert len(final) == 4 and not any(name.endswith(".tmp.npz") for name in final)
    assert all((folder / name).read_bytes() == data for name, data in kept.items())  # not rendered again
    for field in range(4):
        row = field * layout.labels_per_field + 5
        assert ids[row] == layout.label_id(field, 5)
        assert np.array_equal(crops[row], label_crops(film, layout, field, 5, seed=0, shots=2))
    assert np.array_equal(field_crops(film, layout, 3, 0, 2, folder)[1], crops[3 * layout.labels_per_field:])


def test_a_damaged_cache_file_is_rendered_again(batch, tmp_path):
    layout, film = batch
    ids, crops = field_crops(film, layout, 1, 0, 1, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    for junk in (b"not an npz", path.read_bytes()[:1000]):  # junk, and a file cut short
        path.write_bytes(junk)
        assert np.array_equal(field_crops(film, layout, 1, 0, 1, tmp_path)[1], crops)
        with np.load(path) as data:
            assert np.array_equal(data["crops"], crops)
    np.savez(path.with_suffix(""), crops=crops[:, :, :64])  # another shape under the field's name
    assert np.array_equal(field_crops(film, layout, 1, 0, 1, tmp_path)[1], crops)


@pytest.mark.parametrize("shots, size", [(0, 128), (-1, 128), (1.5, 128), (True, 128), (1, 4), (1, 5000)])
def test_impossible_captures_are_refused(batch, shots, size):
    layout, film = batch
    with pytest.raises(PufError, match="capture|side"):
        label_crops(film, layout, 0, 0, seed=0, shots=shots, size=size)


@pytest.mark.parametrize("size", [32, 128, 200])
def test_a_crop_reads_only_the_pixels_formed_for_it(size):
    """The fast path forms only `pixels_read`; every other pixel of its window is left
    black. The cut must come out the same whatever those pixels hold: random quads (turned,
    jittered, near-edge samples included), random windows, unread pixels 0 or 255."""
    rng = np.random.default_rng(size)
    side = 358
    for _ in range(20):
        turn = rng.uniform(-0.05, 0.05)
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 166.7 @ np.array(
            [[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]]) + side / 2 - 0.5
        quad = jittered(corners, 1.5, rng)
        read = pixels_read(quad, size, (side, side))
        if size == 128:  # the model's crop: about half the window is formed
            assert len(read) < 0.6 * side * side
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        crops = []
        for fill in (0, 255):
            unread = np.full_like(image, fill)
            unread.reshape(-1, 3)[read] = image.reshape(-1, 3)[read]
            crops.append(crop_from_corners(unread, quad, size))
        assert np.array_equal(crops[0], crops[1])
        assert np.array_equal(crops[0], crop_from_corners(image, quad, size))


def test_the_windows_light_is_the_frames_at_each_of_its_pixels():
    """The fast path's light over a label's window (a coarse grid interpolated up) is
    `illumination_at` at every pixel within 0.02%, edges included, for windows across the
    frame, turned."""
    exposure = Exposure(gain=150.0, defocus_sigma_px=1.0, vignetting=0.4, excitation_tilt=(0.2, -0.2))
    side, px_um, frame_half = 358, 0.6, (959.5 * 0.6, 719.5 * 0.6)
    u = np.arange(side, dtype=np.float64)
    for centre in ((0.0, 0.0), (400.0, -300.0), (-480.0, 330.0)):
        to_design = image_to_design(centre, np.radians(1.7), px_um, (side, side))
        x = (to_design[0, 0] * u[None, :] + to_design[0, 1] * u[:, None] + to_design[0, 2]) / frame_half[0]
        y = (to_design[1, 0] * u[None, :] + to_design[1, 1] * u[:, None] + to_design[1, 2]) / frame_half[1]
        exact = illumination_at(x, y, exposure)
        light = _window_light(to_design, side, (0.0, 0.0), frame_half, exposure)
        assert light.shape == (side, side)
        assert np.abs(light / exact - 1).max() < 2e-4
