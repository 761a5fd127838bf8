"""The trainer's verbs for the `puf` command: `train` and `export`.

Only the standard library at module level; TensorFlow is imported when a verb runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.verbs import Verb

_TRAINER = ("tensorflow", "onnx", "tf2onnx", "onnxruntime")


def _quiet_tensorflow() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run folder (config, checkpoints, logs, model)")
    parser.add_argument("--config", type=Path, help="config file (JSON or TOML) over the defaults")
    parser.add_argument("--data", help="folder data set: labels.csv + crops/LABEL_ID/*.png")
    parser.add_argument("--backbone", help="resnet50, resnet18, mobile, mobile_s (or *_tiny)")
    parser.add_argument("--steps", type=int, help="total training steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, e.g. --set s=32 --set preprocess.input_size=96")
    parser.add_argument("--init", metavar="RUN_OR_BUNDLE",
                        help="start from a trained model's weights: a run folder, or a bundle with model.onnx "
                             "(models/default); takes its architecture; new pattern head when the classes differ")
    parser.add_argument("--materialize", type=int, metavar="N",
                        help="instead of training: write N augmented copies of every crop of "
                             "--data into RUN_DIR as a folder data set (the paper used 100)")
    parser.add_argument("--cluster", metavar="SPEC",
                        help="train on several machines: a TF_CONFIG-style JSON file or string, "
                             '{"cluster": {"worker": [HOST:PORT, ...]}, "task": {"type": "worker", "index": I}}; '
                             "run the same command on every worker with its own index (default: $TF_CONFIG "
                             "when set, else this machine alone)")
    parser.add_argument("--join-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --cluster: give up when not every worker has joined by then "
                             "(default: the library's, 300 s)")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")


def _train(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from trainer.train import load_config, optimistic_note, train

    overrides = list(args.set)
    if args.init is not None:  # the init model's architecture, under the user's own --set
        from trainer.warm_start import ARCHITECTURE, read_init

        source = read_init(args.init)
        overrides[:0] = [f"{k}={json.dumps(source.architecture[k])}" for k in ARCHITECTURE]
    for key, value in (("init", args.init), ("data", args.data), ("backbone", args.backbone), ("steps", args.steps),
                       ("batch_size", args.batch_size)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    config_file = args.config
    if config_file is None and (args.run_dir / "config.json").exists():
        config_file = args.run_dir / "config.json"  # resuming: the run's own config
    config = load_config(config_file, overrides)
    if args.materialize is not None:
        from edge_app.errors import PufError
        from trainer.augment import Augment, materialize

        if not config.data:
            raise PufError("--materialize needs --data")
        aug = Augment(**{"rotation_deg": 180.0, **config.augment})
        written = materialize(config.data, args.run_dir, args.materialize, aug)
        print(json.dumps({"written": written, "out": str(args.run_dir)}))
        return 0
    if not config.data:
        from edge_app.errors import PufError

        raise PufError("no data set: give --data FOLDER (or data in the config file)")
    from trainer.cluster import JOIN_TIMEOUT_S, cluster_from

    cluster = cluster_from(args.cluster)
    report = train(config, args.run_dir, progress=cluster is None or cluster.chief, cluster=cluster,
                   join_timeout=JOIN_TIMEOUT_S if args.join_timeout is None else args.join_timeout)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        row = (report.get("tar_at_far") or [{}])[0]
        print(f"step {report.get('step')}: TAR {row.get('tar')} at FAR {row.get('far')}, "
              f"EER {report.get('eer')}, pattern accuracy {report.get('pattern_accuracy')} "
              f"(validation labels){optimistic_note(report)}; model in {args.run_dir / 'model.keras'}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a training run folder")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument("--formats", default="int8,float,onnx",
                        help="comma-separated: int8, float, onnx (default: all)")
    parser.add_argument("--far", type=float, default=1e-3,
                        help="FAR the provisional threshold is calibrated for (default 1e-3)")
    parser.add_argument("--no-strict", action="store_true",
                        help="write the bundle even when a parity bound is missed")
    parser.add_argument("--version", help="model version (default: a timestamp)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def _export(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from trainer.export import export

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    manifest = export(args.run_dir, args.out, formats, args.far, strict=not args.no_strict,
                      model_version=args.version)
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    print(f"bundle {args.out}: {manifest['model']['name']} {manifest['model']['version']}")
    print(f"{'file':<20}{'bytes':>10}  {'cos mean':>9} {'cos worst':>9} {'max abs':>9} {'pattern':>8}")
    for fmt, name in (("int8", "model_int8.tflite"), ("float", "model_float.tflite"),
                      ("onnx", "model.onnx")):
        if fmt in manifest["parity"]:
            p = manifest["parity"][fmt]
            print(f"{name:<20}{manifest['files'][name]['bytes']:>10}  {p['cosine_mean']:>9.5f} "
                  f"{p['cosine_worst']:>9.5f} {p['embedding_max_abs']:>9.2e} "
                  f"{p['pattern_agreement']:>8.2%}")
    d = manifest["decision"]
    print(f"provisional threshold {d['threshold']} at FAR {d['far']} ({d['calibrated_on']})")
    print(f"NOT CALIBRATED: {d['not_calibrated_because']}")
    for problem in manifest["parity"]["problems"]:
        print(f"WARNING: {problem}")
    return 0


train = Verb(
    "train",
    "Train the fingerprint network (ArcFace embedding + pattern head); resumes a run.",
    "  puf train runs/r1 --data data/crops                      # defaults: mobile_s, 112 px\n"
    "  puf train runs/r2 --config configs/edge.toml --steps 20000\n"
    "  puf train runs/r2                                         # resume where it stopped\n"
    "  puf train runs/r3 --data data/crops --backbone resnet50 --set s=64 --set m2=0.5\n"
    "  puf train runs/ft --data registry.sqlite --init models/default --set lr=0.0005   # fine-tune\n"
    "  puf train aug100 --data data/crops --materialize 100     # the paper's data set on disk\n"
    "  puf train runs/r4 --data data/crops --cluster cluster.json   # on each worker, its own index",
    _train_arguments,
    _train,
    needs=_TRAINER,
    extra="trainer",
)

export = Verb(
    "export",
    "Export a trained run as a device bundle: int8 and float TFLite, ONNX, manifest.",
    "  puf export runs/r1 --out bundles/r1\n"
    "  puf export runs/r1 --out bundles/r1-onnx --formats onnx --json",
    _export_arguments,
    _export,
    needs=_TRAINER,
    extra="trainer",
)
