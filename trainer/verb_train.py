"""`puf train`: the fingerprint network (ArcFace embedding + pattern head), resumable.

Only the standard library at module level; TensorFlow is imported when the verb runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.arguments import output_path, positive, positive_int
from edge_app.verbs import Verb
from trainer import quiet_tensorflow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=output_path, nargs="?",
                        help="run folder (config, checkpoints, logs, model); not with --list-settings")
    parser.add_argument("--list-settings", action="store_true",
                        help="print every key --set accepts, with its default and meaning, and exit")
    parser.add_argument("--config", type=Path,
                        help="config file (JSON or TOML) over the defaults, or a shipped one by name (edge)")
    parser.add_argument("--data", help="a registry (registry.sqlite, written by puf segment) or a folder data set: "
                                       "labels.csv + crops/LABEL_ID/*.png (or crops/LABEL_ID.png)")
    parser.add_argument("--batch", action="append", default=[], metavar="ID",
                        help="train on this batch's labels only (repeatable; default: every batch of --data)")
    parser.add_argument("--train-held-out", action="store_true",
                        help="also train on labels held out for calibration (status held_out in the "
                             "registry); by default they never train")
    parser.add_argument("--backbone", help="resnet50, resnet18, mobile, mobile_s (or *_tiny)")
    parser.add_argument("--steps", type=positive_int, help="total training steps")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, e.g. --set s=32 --set preprocess.input_size=96")
    parser.add_argument("--init", metavar="RUN_OR_BUNDLE",
                        help="start from a trained model's weights: a run folder, a bundle with model.onnx, or "
                             "'default' (the shipped bundle); takes its architecture; new pattern head when the "
                             "classes differ")
    parser.add_argument("--materialize", type=positive_int, metavar="N",
                        help="instead of training: write N augmented copies of every crop of "
                             "--data into RUN_DIR as a folder data set (the paper used 100)")
    parser.add_argument("--cluster", metavar="SPEC",
                        help="train on several machines: a TF_CONFIG-style JSON file or string, "
                             '{"cluster": {"worker": [HOST:PORT, ...]}, "task": {"type": "worker", "index": I}}; '
                             "run the same command on every worker with its own index (default: $TF_CONFIG "
                             "when set, else this machine alone)")
    parser.add_argument("--join-timeout", type=positive, default=None, metavar="SECONDS",
                        help="with --cluster: give up when not every worker has joined by then "
                             "(default: the library's, 300 s)")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")


def run(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError

    if args.list_settings:
        from trainer.settings import text

        print(text())
        return 0
    if args.run_dir is None:
        raise PufError("give the run folder RUN_DIR (or --list-settings)")
    quiet_tensorflow()
    from trainer.train import load_config, train

    overrides = list(args.set)
    if args.init is not None:  # the init model's architecture, under the user's own --set
        from trainer.warm_start import ARCHITECTURE, read_init

        source = read_init(args.init)
        overrides[:0] = [f"{k}={json.dumps(source.architecture[k])}" for k in ARCHITECTURE]
    for key, value in (("init", args.init), ("data", args.data), ("backbone", args.backbone), ("steps", args.steps),
                       ("batch_size", args.batch_size), ("batches", args.batch or None),
                       ("train_held_out", args.train_held_out or None)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    config_file = args.config
    if config_file is None and (args.run_dir / "config.json").exists():
        config_file = args.run_dir / "config.json"  # resuming: the run's own config
    config = load_config(config_file, overrides)
    if args.materialize is not None:
        from edge_app.errors import PufError
        from trainer.augment import Augment
        from trainer.data import materialize

        if not config.data:
            raise PufError("--materialize needs --data")
        aug = Augment(**{"rotation_deg": 180.0, **config.augment})
        written = materialize(config.data, args.run_dir, args.materialize, aug, batches=tuple(config.batches),
                              held_out=config.train_held_out)
        print(json.dumps({"written": written, "out": str(args.run_dir)}))
        return 0
    if not config.data:
        raise PufError("no data set: give --data FOLDER (or data in the config file)")
    from trainer.cluster import JOIN_TIMEOUT_S, cluster_from

    cluster = cluster_from(args.cluster)
    report = train(config, args.run_dir, progress=cluster is None or cluster.chief, cluster=cluster,
                   join_timeout=JOIN_TIMEOUT_S if args.join_timeout is None else args.join_timeout)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.describe(args.run_dir))
    return 0


verb = Verb(
    "train",
    "Train the fingerprint network (ArcFace embedding + pattern head); resumes a run.",
    "  puf train runs/r1 --data data/crops                      # defaults: mobile_s, 112 px\n"
    "  puf train runs/r2 --config edge --steps 20000             # trainer/configs/edge.toml\n"
    "  puf train runs/r2                                         # resume where it stopped\n"
    "  puf train runs/r3 --data data/crops --backbone resnet50 --set s=64 --set m2=0.5\n"
    "  puf train runs/ft --data registry.sqlite --init default --set lr=0.0005   # fine-tune\n"
    "  puf train runs/b2 --data registry.sqlite --batch B0001 --batch B0002   # these batches only\n"
    "  puf train aug100 --data data/crops --materialize 100     # the paper's data set on disk\n"
    "  puf train --list-settings                                 # every --set key, its default and meaning\n"
    "  puf train runs/r4 --data data/crops --cluster cluster.json   # on each worker, its own index",
    add_arguments,
    run,
    extras=("trainer", "factory"),
    rank=20,
)
