"""Export a trained run as a device bundle: float and int8 TFLite, ONNX, manifest.

    BUNDLE/manifest.json       format, model, preprocessing, heads, threshold, parity,
                               sha256 of every file, "signature": null, "shards": null
                               (recorded outside the bundle: `trainer.export_record`)
    BUNDLE/model_int8.tflite   full-integer (int8 in, int8 out), calibrated on real crops
    BUNDLE/model_float.tflite
    BUNDLE/model.onnx          opset 17

Parity is part of export: each file is run through the device's own runner
(`edge_app.runtime`) on held-out crops and compared with Keras; an export that misses
a bound fails, saying which. The decision threshold written here is provisional: the
FAR-calibrated threshold on the validation labels, with the int8 model (the device's
default); enrollment and evaluation recalibrate it. Signing (Ed25519) and the Faiss
shards are the next issue's: their places in the manifest are "signature" and "shards".
The bundle is written to a temporary folder and renamed into place, never half-written.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_app.bundle_format import FORMAT_FILES, Decision, FileEntry, Manifest, ModelInfo
from edge_app.errors import PufError
from edge_app.pattern_set import PATTERN_SET_FILE
from edge_app.preprocess import Preprocess
from edge_app.runtime import ModelRunner
from trainer.augment import Augment
from trainer.bundle_write import bundle_lock, new_version_dir, replace_dir, replaced_sequence
from trainer.data import load_crops, open_dataset, preprocess_all
from trainer.export_record import record_export
from trainer.metrics import pair_scores, row_cosine, tar_at_far
from trainer.pattern_sets import folder_pattern_set
from trainer.train import CONFIG_NAME, OPTIMISTIC_NOTE, TrainConfig, Validation

INT8_MEAN_COSINE = 0.98
ONNX_COSINE = 0.9999
ONNX_MAX_ABS = 1e-3
FLOAT_COSINE = 0.9999


def load_run(run_dir: Path):
    """The trained Keras model and the run's config."""
    import keras

    run_dir = Path(run_dir)
    if not (run_dir / "model.keras").exists():
        raise PufError(f"{run_dir} holds no trained model (model.keras): train it first "
                       "(puf train)")
    config = TrainConfig.from_dict(json.loads((run_dir / CONFIG_NAME).read_text()))
    return keras.models.load_model(run_dir / "model.keras", compile=False), config


def held_out_crops(run_dir: Path, config, pattern_names: list[str], limit: int = 0):
    """Validation crops of the run (labels never trained on), unaugmented; at most
    `limit` of them (0: all)."""
    split = json.loads((Path(run_dir) / "split.json").read_text())
    dataset = open_dataset(Path(config.data))
    crops = load_crops(dataset, split["val"], pattern_names)
    if limit and len(crops) > limit:
        keep = np.random.default_rng(0).choice(len(crops), limit, replace=False)
        keep.sort()
        crops.images, crops.label, crops.pattern = (crops.images[keep], crops.label[keep],
                                                    crops.pattern[keep])
        crops.capture = [crops.capture[i] for i in keep]
    return crops


def _concrete(model, input_shape):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32, name="crop")])
    def serve(crop):
        out = model(crop, training=False)
        return {"embedding": out["embedding"], "pattern_logits": out["pattern_logits"]}

    return serve


def to_tflite(model, input_shape, representative: np.ndarray | None = None) -> bytes:
    """Float TFLite, or full-integer int8 when representative inputs are given."""
    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the traced signature
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        def samples():
            for x in representative:
                yield [x[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # the converter always says this for full-integer models calibrated by the
        # representative data set (which is how their input statistics are given)
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return converter.convert()


def to_onnx(model, input_shape, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, *input_shape), tf.float32, name="crop")]
    serve = _concrete(model, input_shape)
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=17, output_path=str(path))


def parity(model, runner: ModelRunner, inputs: np.ndarray) -> dict:
    """Keras vs a device runner on the same inputs."""
    out = model(inputs, training=False)
    ref_emb = np.asarray(out["embedding"], np.float32)
    ref_logits = np.asarray(out["pattern_logits"], np.float32)
    got = runner.run(inputs)
    cos = row_cosine(ref_emb, got.embedding)
    ref_unit = ref_emb / np.linalg.norm(ref_emb, axis=1, keepdims=True)
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_worst": float(cos.min()),
        "embedding_max_abs": float(np.abs(ref_unit - got.embedding).max()),
        "logits_max_abs": float(np.abs(ref_logits - got.pattern_logits).max()),
        "pattern_agreement": float(np.mean(ref_logits.argmax(1) == got.pattern_logits.argmax(1))),
        "samples": int(len(inputs)),
    }


def check_parity(report: dict) -> list[str]:
    """What misses its bound, in words (empty when all hold)."""
    problems = []
    p = report.get("int8")
    if p and p["cosine_mean"] < INT8_MEAN_COSINE:
        problems.append(f"int8 mean cosine {p['cosine_mean']:.4f} < {INT8_MEAN_COSINE}")
    for fmt, bound in (("onnx", ONNX_COSINE), ("float", FLOAT_COSINE)):
        p = report.get(fmt)
        if not p:
            continue
        if p["cosine_worst"] < bound:
            problems.append(f"{fmt} worst cosine {p['cosine_worst']:.6f} < {bound}")
        if fmt == "onnx" and max(p["embedding_max_abs"], p["logits_max_abs"]) > ONNX_MAX_ABS:
            problems.append(f"onnx max abs difference "
                            f"{max(p['embedding_max_abs'], p['logits_max_abs']):.2e} > {ONNX_MAX_ABS}")
        if p["pattern_agreement"] < 1.0:
            problems.append(f"{fmt} pattern prediction differs on "
                            f"{1 - p['pattern_agreement']:.2%} of crops")
    return problems


def provisional_threshold(runner: ModelRunner, crops, params: Preprocess, far: float, aug=None) -> Decision:
    """The threshold at `far` on the run's validation labels: provisional, never calibrated
    (that takes re-captures of enrolled labels: `puf evaluate`)."""
    val = Validation(crops, params, aug)
    enroll = runner.run(val.enroll_x).embedding
    query = runner.run(val.query_x).embedding
    genuine, impostor = pair_scores(enroll, val.enroll_id, query, val.query_id)
    row = tar_at_far(genuine, impostor, far)
    why = ("set on the training run's validation labels (" + val.validation + "), not on re-captures of "
           "enrolled labels: calibrate it with puf evaluate")
    if val.optimistic:
        why = f"{OPTIMISTIC_NOTE}; {why}"
    return Decision(threshold=round(row["threshold"], 6), far=far, calibrated=False, extra={
        "provisional": True, "not_calibrated_because": why, "validation": val.validation, "optimistic": val.optimistic,
        "calibrated_on": f"{len(genuine)} genuine and {len(impostor)} impostor pairs of "
                         f"validation labels ({val.validation}; int8 model)",
        "tar_at_that_far": row["tar"], "far_resolved": row["resolved"]})


def export(run_dir: Path, out: Path, formats: tuple[str, ...] = ("int8", "float", "onnx"),
           far: float = 1e-3, strict: bool = True, calibration_samples: int = 300,
           model_version: str | None = None, progress: bool = True) -> dict:
    """Write the bundle; returns its manifest's JSON. One writer at a time at `out`
    (`trainer.bundle_write.bundle_lock`, as enroll and evaluate take it)."""
    run_dir, out = Path(run_dir), Path(out)
    unknown = set(formats) - set(FORMAT_FILES)
    if unknown or not formats:
        raise PufError(f"formats must be some of {sorted(FORMAT_FILES)}, got {list(formats)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PufError(f"cannot make the folder {out.parent}: {error.strerror or error}") from None
    with bundle_lock(out):  # never under an enrollment building on the bundle it replaces
        return _export(run_dir, out, formats, far, strict, calibration_samples, model_version, progress)


def _export(run_dir: Path, out: Path, formats: tuple[str, ...], far: float, strict: bool, calibration_samples: int,
            model_version: str | None, progress: bool) -> dict:
    """`export`, with the bundle at `out` locked."""
    model, config = load_run(run_dir)
    pattern_set = folder_pattern_set(run_dir)
    patterns = pattern_set.names
    params = Preprocess.from_dict(config.preprocess)
    crops = held_out_crops(run_dir, config, patterns)
    all_inputs = preprocess_all(crops, params)
    rng = np.random.default_rng(1)
    representative = all_inputs[rng.permutation(len(all_inputs))[:calibration_samples]]
    inputs = all_inputs[np.sort(rng.permutation(len(all_inputs))[:400])]  # parity samples
    tmp = new_version_dir(out)
    try:
        report: dict = {}
        timings: dict = {}
        bar = tqdm(formats, desc="exporting", unit="file", disable=not progress)
        for fmt in bar:
            bar.set_postfix(file=FORMAT_FILES[fmt])
            start = time.monotonic()
            path = tmp / FORMAT_FILES[fmt]
            if fmt == "onnx":
                to_onnx(model, params.input_shape, path)
            else:
                path.write_bytes(to_tflite(model, params.input_shape,
                                           representative if fmt == "int8" else None))
            timings[fmt] = round(time.monotonic() - start, 1)
            runner = ModelRunner(path, 2, config.embedding_dim, len(patterns), params)
            report[fmt] = parity(model, runner, inputs)
        problems = check_parity(report)
        if problems and strict:
            raise PufError("export parity failed: " + "; ".join(problems))
        device_fmt = "int8" if "int8" in formats else formats[0]
        decision = provisional_threshold(
            ModelRunner(tmp / FORMAT_FILES[device_fmt], 2, config.embedding_dim,
                        len(patterns), params), crops, params, far, Augment(**config.augment))
        evaluation = json.loads((run_dir / "eval.json").read_text()) \
            if (run_dir / "eval.json").exists() else {}
        pattern_set.save(tmp / PATTERN_SET_FILE)
        manifest = Manifest(
            model=ModelInfo(f"puf-{config.backbone}", model_version or time.strftime("%Y%m%d-%H%M%S"), {
                "backbone": config.backbone,
                "trained_steps": evaluation.get("step"),
                "train_seconds": evaluation.get("train_seconds"),
                "config": {k: v for k, v in json.loads((run_dir / "config.json").read_text()).items()
                           if k != "data"},
            }),
            default_format=device_fmt,
            preprocessing=params.to_dict(),
            embedding_dim=config.embedding_dim,
            pattern_classes=patterns,
            decision=decision,
            files={name: FileEntry.of(tmp / name) for name in [FORMAT_FILES[f] for f in formats] + [PATTERN_SET_FILE]},
            sequence=replaced_sequence(out),  # raised by each signing (edge_app.bundle_format.Release)
            # written as null: enrollment adds the Faiss shards, signing the Ed25519 signature
            extra={"shards": None, "signature": None,
                   "input": {"shape": list(params.input_shape), "dtype": "float32 (int8 model: "
                             "quantised by edge_app.runtime from the input tensor's parameters)"},
                   "embedding_normalised_in_model": False,
                   "pattern_set": pattern_set.describe(),
                   "parity": {**report, "bounds": {"int8_mean_cosine": INT8_MEAN_COSINE,
                                                   "onnx_cosine": ONNX_COSINE, "onnx_max_abs": ONNX_MAX_ABS},
                              "problems": problems},
                   "conversion_seconds": timings})
        manifest.write(tmp)
        record_export(manifest.to_dict(), out)  # what lets its first signing trust it
        replace_dir(tmp, out)
        return manifest.to_dict()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
