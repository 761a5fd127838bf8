"""The training settings `puf train --set KEY=VALUE` (and a config file) accept: each key, its
default and what it means, for `puf train --list-settings` and docs/reference/training-settings.md.

The defaults are read from the dataclasses that own them (`trainer.train.TrainConfig`,
`edge_app.preprocess.Preprocess`, `trainer.augment.Augment`); only the meanings live here, and
tests/trainer/test_settings.py holds their keys equal, so a new setting without a meaning fails.
"""

from __future__ import annotations

from dataclasses import asdict

from edge_app.preprocess import Preprocess
from trainer.augment import Augment
from trainer.train import TrainConfig

MEANINGS: dict[str, str] = {
    "data": "folder data set (labels.csv + crops/) or a factory registry (*.sqlite); --data",
    "batches": "train on these batches' labels only (empty: every batch); --batch",
    "train_held_out": "also train on a registry's labels held out for calibration; --train-held-out",
    "init": "start from this run folder's or bundle's weights ('default': the shipped model); --init",
    "train_only": "'' trains the whole network; 'pattern_head' keeps the init's fingerprint as it is and "
                  "trains only the pattern head (new glyphs on a film the fingerprint already tells apart)",
    "val_frac": "share of labels held out for validation (chosen by label id hash)",
    "max_labels": "train on at most this many labels, spread evenly over the data (0: all)",
    "backbone": "network by name: resnet50, resnet18, mobile, mobile_s, or a *_tiny test variant; --backbone",
    "preprocess.input_size": "model input side in pixels (16-512)",
    "preprocess.channel": "'green' (the film's emission) or 'gray'",
    "preprocess.border_mask_frac": "the outer ring of this fraction of the side is zeroed: the etched border "
                                   "every label shares",
    "preprocess.normalise": "per-image normalisation: 'standardise' ((x - mean) / std over the unmasked area)",
    "embedding_dim": "length of the fingerprint vector",
    "head_channels": "channels of the embedding head's 1x1 convolution (it keeps where texture is)",
    "pattern_mlp": "hidden units of the pattern head",
    "dropout": "dropout before the embedding",
    "s": "scale of the combined-margin (ArcFace) loss",
    "m1": "multiplicative angular margin (1: none)",
    "m2": "additive angular margin (ArcFace's)",
    "m3": "additive cosine margin (CosFace's)",
    "sample_rate": "share of the other label centres each step's loss scores (partial FC; 1: all)",
    "margin_warmup_steps": "ramp the margin in from 0 over this many steps",
    "batch_patterns": "fill each batch with the labels of this many patterns (0: shuffle all crops)",
    "per_label": "captures of each label in a grouped batch",
    "pattern_weight": "weight of the pattern head's loss beside the identity loss",
    "steps": "total training steps; --steps",
    "batch_size": "crops a step (the global batch on several workers); --batch-size",
    "lr": "peak learning rate (linear warm-up, then cosine decay to 1% of it)",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "weight_decay": "decoupled weight decay (AdamW)",
    "augment.rotation_deg": "rotation, uniform in +- this many degrees (180: the paper's 0-360)",
    "augment.v_shift": "the paper's HSV V shift (low, high), scaled to the crop",
    "augment.v_shift_p": "probability of the V shift",
    "augment.gain": "exposure gain (low, high)",
    "augment.gamma": "gamma (low, high)",
    "augment.defocus_sigma": "Gaussian defocus sigma in pixels (low, high)",
    "augment.defocus_p": "probability of defocus",
    "augment.motion_px": "motion blur length in pixels (low, high)",
    "augment.motion_p": "probability of motion blur",
    "augment.noise_sigma": "sensor noise sigma in grey levels (low, high)",
    "augment.tilt": "perspective: corner displacement as a fraction of the side",
    "augment.scale": "scale (low, high)",
    "augment.shift": "shift as a fraction of the side",
    "augment.jpeg_quality": "JPEG quality (low, high)",
    "augment.jpeg_p": "probability of JPEG compression",
    "seed": "seed of the data order, augmentation and initialisation",
    "eval_every": "verify on the validation labels every this many steps",
    "eval_far": "the FAR at which validation reports TAR",
    "checkpoint_every": "write a checkpoint every this many steps",
    "threads": "TensorFlow intra-op threads (0: TensorFlow decides)",
}


def defaults() -> dict[str, object]:
    """Every settable key with its default, nested keys (preprocess, augment) as KEY.FIELD."""
    nested = {"preprocess": asdict(Preprocess()), "augment": asdict(Augment())}
    flat: dict[str, object] = {}
    for key, value in asdict(TrainConfig()).items():
        if key in nested:
            flat.update({f"{key}.{field}": default for field, default in nested[key].items()})
        else:
            flat[key] = value
    return flat


def _shown(value: object) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def table() -> list[tuple[str, str, str]]:
    """(key, default, meaning) of every setting, in the config's order."""
    return [(key, _shown(default), MEANINGS[key]) for key, default in defaults().items()]


def text() -> str:
    """What `puf train --list-settings` prints."""
    rows = table()
    width = max(len(key) for key, _, _ in rows)
    lines = [f"{key:<{width}}  {default:<14}  {meaning}" for key, default, meaning in rows]
    return ("settings for --set KEY=VALUE (or a config file); nested ones as KEY.FIELD "
            "(--set augment.rotation_deg=180):\n" + "\n".join(lines))
