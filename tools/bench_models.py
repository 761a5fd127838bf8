"""ms per label for each backbone x format, side by side in one run, plus int8 parity.

    .venv/bin/python tools/bench_models.py --data /work/data/sim_train --bundle models/default

Each backbone is built at the given input size with random weights, then its batch-norm
statistics are calibrated on real crops (forward passes in training mode, no gradient
steps), so activations have the ranges a trained network's have; a random network with
untouched BN statistics is a misleading int8 case. It is exported exactly as `puf export`
does (float TFLite, full-int8 TFLite calibrated on real crops, ONNX opset 17) and every
file is run through the device runtime (`edge_app.runtime`) with 2 threads: batch 1
(ms per label, median of many runs) and batch 64 (ms per label). The int8-vs-Keras
cosine of the embeddings is reported per backbone; the shipped bundle, if given, is
measured the same way (its parity is of a TRAINED network).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def real_inputs(data: Path, params, count: int) -> np.ndarray:
    from edge_app.preprocess import preprocess_batch
    from fabrication.patterns import pattern_names
    from trainer.data import FolderDataset, load_crops

    dataset = FolderDataset(data)
    labels = dataset.labels()[: max(1, count // 4)]
    crops = load_crops(dataset, labels, pattern_names())
    return preprocess_batch(crops.images[:count], params)


def time_runner(runner, x1: np.ndarray, x64: np.ndarray, seconds: float = 3.0) -> dict:
    for _ in range(10):
        runner.run(x1)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 50:
        t = time.perf_counter()
        runner.run(x1)
        times.append(time.perf_counter() - t)
    runner.run(x64)
    batch = []
    for _ in range(5):
        t = time.perf_counter()
        runner.run(x64)
        batch.append(time.perf_counter() - t)
    runner.run(x1)  # back to batch 1
    return {"ms_batch1": 1000 * float(np.median(times)),
            "ms_batch1_p90": 1000 * float(np.percentile(times, 90)),
            "ms_per_label_batch64": 1000 * float(np.median(batch)) / len(x64)}


def bench_model(name, model, params, inputs, emb_dim, classes, threads, work: Path) -> list[dict]:
    from edge_app.runtime import ModelRunner
    from trainer.export import parity, to_onnx, to_tflite

    rows = []
    x1, x64 = inputs[:1], inputs[:64]
    files = {}
    t = time.monotonic()
    files["float"] = work / f"{name}_float.tflite"
    files["float"].write_bytes(to_tflite(model, params.input_shape))
    files["int8"] = work / f"{name}_int8.tflite"
    files["int8"].write_bytes(to_tflite(model, params.input_shape, inputs[:200]))
    files["onnx"] = work / f"{name}.onnx"
    to_onnx(model, params.input_shape, files["onnx"])
    convert = time.monotonic() - t
    for fmt in ("int8", "float", "onnx"):
        runner = ModelRunner(files[fmt], threads, emb_dim, classes, params)
        p = parity(model, runner, inputs[:200])
        rows.append({"model": name, "format": fmt, "params_m": round(model.count_params() / 1e6, 2),
                     "mb": round(files[fmt].stat().st_size / 1e6, 2),
                     **{k: round(v, 3) for k, v in time_runner(runner, x1, x64).items()},
                     "cos_vs_keras_mean": round(p["cosine_mean"], 5),
                     "cos_vs_keras_worst": round(p["cosine_worst"], 5),
                     "pattern_agreement": p["pattern_agreement"],
                     "convert_s_all_formats": round(convert, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data/sim_train"),
                        help="folder data set of real (simulated) crops for BN and int8 calibration")
    parser.add_argument("--backbones", default="resnet50,resnet18,mobile,mobile_s")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--bundle", type=Path, help="also measure a trained bundle's model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the rows, date and machine as JSON here")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from edge_app.preprocess import Preprocess
    from trainer.network import build_network

    params = Preprocess(input_size=args.input_size)
    inputs = real_inputs(args.data, params, 256)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            tf.keras.utils.set_random_seed(0)
            model = build_network(name, params.input_shape, args.embedding_dim, 44)
            for i in range(0, len(inputs), 32):  # calibrate batch-norm statistics on real crops
                for _ in range(4):
                    model(inputs[i:i + 32], training=True)
            rows += bench_model(f"{name}@{args.input_size} (random, BN calibrated)", model, params,
                                inputs, args.embedding_dim, 44, args.threads, Path(tmp))
        if args.bundle:
            from edge_app.bundle_format import FORMAT_FILES, Manifest
            from edge_app.runtime import ModelRunner

            manifest = Manifest.read(args.bundle)
            bparams = Preprocess.from_dict(manifest.preprocessing)
            binputs = real_inputs(args.data, bparams, 64)
            parity = manifest.extra["parity"]  # export's report, untyped
            for fmt in ("int8", "float", "onnx"):
                if FORMAT_FILES[fmt] not in manifest.file_entries:
                    continue
                runner = ModelRunner.from_bundle(args.bundle, fmt, args.threads)
                row = {"model": f"shipped {manifest.model.name if manifest.model else ''}@{bparams.input_size} "
                                "(trained)",
                       "format": fmt,
                       "mb": round((manifest.file_entries[FORMAT_FILES[fmt]].bytes or 0) / 1e6, 2),
                       **{k: round(v, 3) for k, v in time_runner(runner, binputs[:1], binputs[:64]).items()},
                       "cos_vs_keras_mean": round(parity[fmt]["cosine_mean"], 5),
                       "cos_vs_keras_worst": round(parity[fmt]["cosine_worst"], 5)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads"
    print(f"\n{machine}; ms per label")
    print(f"{'model':<48}{'format':<7}{'MB':>7}{'batch 1':>9}{'p90':>8}{'batch 64':>10}"
          f"{'cos int8/fl':>12}")
    for r in rows:
        print(f"{r['model']:<48}{r['format']:<7}{r['mb']:>7.2f}{r['ms_batch1']:>9.3f}"
              f"{r['ms_batch1_p90']:>8.3f}{r['ms_per_label_batch64']:>10.3f}"
              f"{r['cos_vs_keras_mean']:>12.5f}")
    if args.out:
        args.out.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
                                        "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
