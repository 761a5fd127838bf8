"""A small real model bundle whose weights are designed, not trained: tests and benchmarks
get a bundle with no training run (`tests/bundle_support.py`, `tools/bench_verify.py --designed`,
`tools/bench_app.py --designed`).

The model is a real Keras network exported to int8 TFLite by the trainer's own converter
and run by the device's runner. Its two heads are what the bundle format asks for:

* "embedding": the preprocessed crop pooled to 28x28 with the central glyph square
  zeroed (texture only), then a fixed random orthogonal projection to 256 dimensions;
  pooled film texture tells labels apart (re-captures of a label score about 0.75-0.95,
  other labels below 0.55).
* "pattern_logits": the glyph region correlated with each pattern's rendered template
  (`edge_app.orientation.render_templates`): a template-matching pattern head.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edge_app.bundle_format import BUNDLE_FORMAT, FORMAT_FILES, MANIFEST, sha256_file
from edge_app.layout import BatchLayout
from edge_app.orientation import render_templates
from edge_app.preprocess import Preprocess, preprocess
from fabrication.laser_response import REFERENCE_POWER_MW, line_width_um
from fabrication.patterns import pattern_by_name, pattern_names
from trainer.export import to_onnx, to_tflite
from trainer.export_record import record_export

INPUT = 112
EMBEDDING_DIM = 256
THRESHOLD = 0.62


def _glyph_templates(names: list[str], size: int):
    layout = BatchLayout("T", ("x",) * 2400)
    glyphs = {name: pattern_by_name(name).strokes for name in names}
    return render_templates(glyphs, glyph_frac=layout.glyph_size_um / layout.label_size_um,
                            line_frac=line_width_um(REFERENCE_POWER_MW) / layout.label_size_um, size=size)


def designed_model(names: list[str]):
    import keras

    pooled = INPUT // 4
    rng = np.random.default_rng(7)
    mask = np.ones((pooled, pooled, 1), np.float32)
    lo, hi = pooled // 4, pooled - pooled // 4
    mask[lo:hi, lo:hi] = 0.0
    projection = np.linalg.qr(rng.standard_normal((pooled * pooled, EMBEDDING_DIM)))[0].astype(np.float32)
    region = INPUT // 2
    templates = _glyph_templates(names, region // 2).vectors  # (classes, (region/2)^2), ink positive

    inputs = keras.Input((INPUT, INPUT, 1), name="crop")
    texture = keras.layers.AveragePooling2D(4, name="texture_pool")(inputs)
    texture = keras.layers.Multiply(name="glyph_mask")([texture, keras.ops.convert_to_tensor(mask[None])])
    texture = keras.layers.Flatten(name="texture_flat")(texture)
    dense = keras.layers.Dense(EMBEDDING_DIM, use_bias=False, name="embedding")
    embedding = dense(texture)
    dense.set_weights([projection])
    glyph = keras.layers.Cropping2D((INPUT - region) // 2, name="glyph_region")(inputs)
    glyph = keras.layers.AveragePooling2D(2, name="glyph_pool")(glyph)
    glyph = keras.layers.Flatten(name="glyph_flat")(glyph)
    head = keras.layers.Dense(len(names), name="pattern_logits")
    logits = head(glyph)
    head.set_weights([-0.6 * templates.T.astype(np.float32), np.zeros(len(names), np.float32)])
    return keras.Model(inputs, {"embedding": embedding, "pattern_logits": logits})


def write_model_bundle(out: Path, crops: list[np.ndarray], formats: tuple[str, ...] = ("int8",)) -> Path:
    """A bundle as `puf export` writes it (unsigned, no shards) holding the designed model;
    `crops` calibrate the int8 model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    names = pattern_names()
    params = Preprocess(input_size=INPUT)
    model = designed_model(names)
    representative = np.stack([preprocess(crop, params) for crop in crops])
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        path = out / FORMAT_FILES[fmt]
        if fmt == "onnx":
            to_onnx(model, params.input_shape, path)
        else:
            path.write_bytes(to_tflite(model, params.input_shape, representative if fmt == "int8" else None))
    manifest = {
        "format_version": BUNDLE_FORMAT,
        "model": {"name": "designed-test-model", "version": "1"},
        "default_format": formats[0],
        "preprocessing": params.to_dict(),
        "embedding_dim": EMBEDDING_DIM,
        "pattern_classes": names,
        "decision": {"threshold": THRESHOLD, "far": None, "provisional": True},
        "files": {FORMAT_FILES[f]: {"sha256": sha256_file(out / FORMAT_FILES[f]),
                                    "bytes": (out / FORMAT_FILES[f]).stat().st_size} for f in formats},
        "shards": None,
        "signature": None,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    record_export(manifest, out)  # as puf export records it: what lets its first signing trust it
    return out
