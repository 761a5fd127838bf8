"""The clone attack: a genuine label's photo printed and re-photographed reaches the
fingerprint stage (segmentation finds it) and is rejected by a real enrolled bundle, while a
fresh capture of the same label is accepted."""

import numpy as np
import pytest

from edge_app.errors import PufError
from fabrication.sim.clone import PrintModel, clone_label, photograph_clone, screen_thresholds
from tests.bundle_support import sim_batch


def one_verdict(verifier, image):
    [verdict] = verifier.verify_image(image)
    return verdict


@pytest.mark.parametrize("slot", [1, 6, 10])
def test_a_clone_is_segmented_then_rejected_and_the_label_itself_accepted(verifier, slot):
    batch = sim_batch()
    printed, copy_photo = clone_label(batch.film, batch.layout, 0, slot, seed=slot)
    clone, truth = photograph_clone(printed, batch.layout, 0, slot, seed=40 + slot)
    assert truth["label_id"] == batch.layout.label_id(0, slot)
    verdict = one_verdict(verifier, clone)
    assert verdict.verdict == "counterfeit", verdict.reason  # found, fingerprinted, refused
    assert verdict.pattern == truth["pattern"]  # the glyph survived the print
    assert verdict.score < verdict.threshold
    genuine, _ = batch.handheld(0, slot, seed=40 + slot)  # the same camera pose, the real film
    verdict = one_verdict(verifier, genuine)
    assert verdict.verdict == "genuine" and verdict.label_id == truth["label_id"], verdict.reason


def test_the_print_loses_the_grain_and_changes_colour():
    batch = sim_batch()
    printed, _ = clone_label(batch.film, batch.layout, 0, 3, seed=1)
    clone, _ = photograph_clone(printed, batch.layout, 0, 3, seed=2)
    genuine, _ = batch.handheld(0, 3, seed=2)
    b_clone, g_clone = clone[:, :, 0].mean(), clone[:, :, 1].mean()
    b_real, g_real = genuine[:, :, 0].mean(), genuine[:, :, 1].mean()
    assert b_clone / g_clone > 1.2 * b_real / g_real  # the ink's broad emission, not the film's green line
    # the halftone: the print is two-tone (ink dot or paper), the film is a continuum of grains
    ink = printed.emission
    assert np.mean((ink > 0.2) & (ink < 0.7)) < 0.35


def test_a_lossless_copy_would_pass_so_the_print_is_what_defeats_it(verifier):
    """A continuous-tone print on the film's own grid and colour is an optical copy: the
    fingerprint cannot tell it from the label. The halftone clone's rejection comes from
    what printing loses, not from a mismatch in the simulation."""
    batch = sim_batch()
    perfect = PrintModel(dot_um=0.5, screen_dots=0, dot_gain=0.0, ink_blur_um=0.0, paper_glow=0.0,
                         fibre_contrast=0.0, ink_bgr=(0.30, 1.0, 0.08))
    printed, _ = clone_label(batch.film, batch.layout, 0, 4, seed=4, printer=perfect)
    copy, truth = photograph_clone(printed, batch.layout, 0, 4, seed=44, printer=perfect)
    verdict = one_verdict(verifier, copy)
    assert verdict.verdict == "genuine" and verdict.label_id == truth["label_id"], verdict.reason


def test_screen_grows_one_dot_from_the_cell_centre():
    t = screen_thresholds(4)
    assert sorted(t.ravel()) == pytest.approx((np.arange(16) + 0.5) / 16)
    assert t[1:3, 1:3].max() < t[0, 0]  # the centre inks first


@pytest.mark.parametrize("bad", [dict(dot_um=0.1), dict(screen_dots=-1), dict(ink_blur_um=-1.0)])
def test_an_impossible_printer_is_refused(bad):
    with pytest.raises(PufError):
        PrintModel(**bad)
