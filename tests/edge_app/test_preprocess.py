"""The model's preprocessing gives the same inputs bit for bit however it is computed: the trainer
built its training inputs with it and every enrolled fingerprint came through it, so a faster
way of computing it may not move a single value (a moved int8 input moves a score)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_app.preprocess import CLIP, Preprocess, preprocess


def _reference(crop: np.ndarray, params: Preprocess) -> np.ndarray:
    """The definition, step by step: the channel, resized, standardised over the unmasked
    pixels (a boolean mask), clipped, the border ring zeroed."""
    plane = crop[:, :, 1] if params.channel == "green" else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    size = params.input_size
    shrink = plane.shape[0] > size or plane.shape[1] > size
    x = cv2.resize(np.ascontiguousarray(plane), (size, size),
                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR).astype(np.float32)
    mask = params.mask()
    kept = x[mask > 0]
    mean, std = float(kept.mean()), float(kept.std())
    return (np.clip((x - mean) * (1.0 / max(std, 1.0)), -CLIP, CLIP) * mask)[:, :, None]


@pytest.mark.parametrize("params", [Preprocess(96), Preprocess(112), Preprocess(96, "gray"),
                                    Preprocess(64, border_mask_frac=0.0), Preprocess(160, border_mask_frac=0.3)])
def test_preprocess_is_its_definition_bit_for_bit(params):
    rng = np.random.default_rng(11)
    for i in range(40):
        if i % 2:  # texture of every contrast, down to a flat crop (std below 1) and saturated specks
            crop = rng.normal(120, i % 30 * 0.5, (128, 128, 3)).clip(0, 255).astype(np.uint8)
        else:
            crop = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
        crop = crop[:100, :90] if i % 7 == 0 else crop  # not square, not the crop size
        ours, theirs = preprocess(crop, params), _reference(crop, params)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        # the same values, and the same signs of zero (what an int8 model is handed is the same)
        assert np.array_equal(ours, theirs) and np.array_equal(np.signbit(ours), np.signbit(theirs))
