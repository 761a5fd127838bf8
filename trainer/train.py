"""The training recipe: ArcFace over label identities plus a pattern head, in one loop.

    config = defaults < config file (JSON or TOML) < --set key=value
    run dir: config.json  ckpt/  log.csv  tb/  model.keras  eval.json

A run is reproducible from its folder alone (the final config is saved there), and
resumable: run it again with the same run dir and it continues from the last checkpoint
(Ctrl-C and SIGTERM write one before stopping). Every `eval_every` steps it reports
verification on held-out labels (their first microscope capture enrolled, their
handheld captures as queries: TAR at `eval_far`, EER) and pattern accuracy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
import signal
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.atomic_write import write_atomic
from edge_app.errors import PufError
from edge_app.json_files import parse_json
from edge_app.pattern_set import PATTERN_SET_FILE
from edge_app.preprocess import Preprocess, preprocess
from trainer.augment import Augment, augment
from trainer.backbones import backbone_names
from trainer.cluster import JOIN_TIMEOUT_S, Cluster, agree, average_state, join
from trainer.data import Grouping, load_crops, open_dataset, preprocess_all, training_pipeline
from trainer.metrics import pair_scores, verification_report
from trainer.network import build_network
from trainer.run_log import ROW_EVERY, RunLog
from trainer.warm_start import check_architecture, init_centres, read_init, warm_start

CONFIG_NAME = "config.json"
TRAIN_ONLY = ("", "pattern_head")
PATTERN_HEAD = ("pattern_fc", "pattern_logits")  # trainer.network's layers of the pattern head
INIT_NAME = "init.json"  # what the run started from (trainer.warm_start), when --init


@dataclass
class TrainConfig:
    data: str = ""  # folder data set (labels.csv + crops/) or a factory registry (*.sqlite)
    batches: list = field(default_factory=list)  # train on these batches' labels only (empty: every batch)
    train_held_out: bool = False  # also train on a registry's labels held out for calibration
    init: str = ""  # start from this run folder's or bundle's weights (trainer.warm_start)
    # "" trains the whole network; "pattern_head" keeps the init's fingerprint exactly as it is and
    # trains only the pattern head (new glyphs on a film the fingerprint already tells apart)
    train_only: str = ""
    val_frac: float = 0.05  # share of labels held out for validation (by label id hash)
    max_labels: int = 0  # train on at most this many labels, spread evenly over the data (0: all)
    backbone: str = "mobile_s"
    preprocess: dict = field(default_factory=lambda: Preprocess().to_dict())
    embedding_dim: int = 512
    head_channels: int = 64
    pattern_mlp: int = 128
    dropout: float = 0.0
    # identity loss: combined margin (ArcFace by default) with partial-FC sampling
    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.5
    m3: float = 0.0
    sample_rate: float = 1.0
    margin_warmup_steps: int = 0  # ramp the margin in from 0 over this many steps
    # batches of a few patterns' labels (trainer.data.grouped_batches): 0 shuffles all crops
    batch_patterns: int = 0
    per_label: int = 2  # captures of each label in a grouped batch
    pattern_weight: float = 1.0
    # optimisation
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 5e-4
    augment: dict = field(default_factory=dict)  # fields of trainer.augment.Augment
    seed: int = 0
    eval_every: int = 500
    eval_far: float = 1e-3
    checkpoint_every: int = 200
    threads: int = 0  # TensorFlow intra-op threads (0: TensorFlow decides)

    def validate(self) -> None:
        if self.backbone not in backbone_names():
            raise PufError(f"unknown backbone {self.backbone!r}; known: {', '.join(backbone_names())}")
        Preprocess.from_dict(self.preprocess)
        try:
            Augment(**self.augment)
        except TypeError as error:
            raise PufError(f"bad augmentation settings: {error}") from None
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 2, "batch size must be >= 2"),
            (self.embedding_dim >= 2, "embedding dimension must be >= 2"),
            (self.lr > 0, "learning rate must be positive"),
            (0 < self.val_frac < 1, "val_frac must be in (0, 1)"),
            (0 < self.eval_far < 1, "eval_far must be in (0, 1)"),
            (self.eval_every >= 1 and self.checkpoint_every >= 1,
             "eval_every and checkpoint_every must be >= 1"),
            (self.pattern_weight >= 0, "pattern weight must be >= 0"),
            (self.batch_patterns >= 0 and self.per_label >= 1,
             "batch_patterns must be >= 0 and per_label >= 1"),
            (self.train_only in TRAIN_ONLY, f"train_only must be one of {TRAIN_ONLY}"),
            (isinstance(self.batches, list) and all(isinstance(b, str) and b for b in self.batches),
             "batches must be a list of batch ids"),
            (self.train_only != "pattern_head" or bool(self.init),
             "train_only=pattern_head keeps the fingerprint of --init: give --init"),
        ]
        for ok, message in checks:
            if not ok:
                raise PufError(message)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PufError(f"unknown config keys {unknown}; known: {sorted(known)}")
        defaults = asdict(cls())
        for key, value in data.items():
            _check_number(key, defaults[key], value)
        return cls(**{**defaults, **data})


def _check_number(key: str, default: object, value: object) -> None:
    """A number key's value is a finite number, whole where the default is (`validate` checks its range)."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or (isinstance(default, int) and value != int(value)):
        raise PufError(f"config key {key} must be a finite {'whole ' if isinstance(default, int) else ''}number, "
                       f"got {value!r:.60}")


def shipped_config(path: str | Path) -> Path:
    """A config file, or the name of one shipped in trainer/configs (package data, so
    `--config edge` works from a wheel install too)."""
    path = Path(path)
    shipped = Path(str(files("trainer") / "configs" / f"{path}.toml"))
    return shipped if str(path) == path.stem and not path.exists() and shipped.exists() else path


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Defaults, then a config file, then KEY=VALUE overrides (VALUE parsed as JSON
    when it can be; dotted keys reach into preprocess/augment: preprocess.input_size=96)."""
    data = asdict(TrainConfig())
    if path is not None:
        path = shipped_config(path)
        try:
            text = path.read_text()
            layer = tomllib.loads(text) if path.suffix == ".toml" else parse_json(text, "config")
        except FileNotFoundError:
            raise PufError(f"no config file at {path}") from None
        except (OSError, ValueError, PufError) as error:
            raise PufError(f"cannot read the config file {path}: {error}") from None
        if not isinstance(layer, dict):
            raise PufError(f"the config file {path} is not a table of keys and values")
        data = _merge(data, layer)
    for item in overrides:
        if "=" not in item:
            raise PufError(f"--set takes KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = parse_json(raw, f"--set {key}")
        except PufError:  # text, not JSON (or JSON nested too deep to read): the key's check says if it may be
            value = raw
        node = value
        for part in reversed(key.split(".")[1:]):
            node = {part: node}
        data = _merge(data, {key.split(".")[0]: node})
    config = TrainConfig.from_dict(data)
    config.validate()
    return config


def _merge(base: dict, layer: dict) -> dict:
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def spread(label_ids: list[str], count: int) -> list[str]:
    """At most `count` of the (sorted) label ids, evenly spaced: every batch, and so every film
    texture, keeps its share, where the first `count` would be the first batches only."""
    if len(label_ids) <= count:
        return list(label_ids)
    return [label_ids[i] for i in np.linspace(0, len(label_ids) - 1, count).round().astype(int)]


def choose_labels(dataset, config: TrainConfig) -> tuple[list[str], list[str]]:
    """The run's training and validation labels: of `config.batches` (every batch when none
    is named), never a label held out for calibration unless `config.train_held_out`."""
    known = sorted({batch for batch in dataset.batch.values() if batch})
    unknown = [batch for batch in config.batches if batch not in known]
    if unknown:
        raise PufError(f"--batch {', '.join(unknown)}: no such batch in {config.data} "
                       f"(its batches: {', '.join(known) or 'none named'})")
    chosen = tuple(config.batches)
    train_ids, val_ids = (dataset.labels(split, config.val_frac, batches=chosen, held_out=config.train_held_out)
                          for split in ("train", "val"))
    if config.max_labels:
        train_ids = spread(train_ids, config.max_labels)
    if len(train_ids) < 2 or len(val_ids) < 2:
        held = len(dataset.labels(batches=chosen)) - len(dataset.labels(batches=chosen, held_out=False))
        note = (f" ({held} more are held out for calibration, which a run leaves out unless --train-held-out)"
                if held and not config.train_held_out else "")
        raise PufError(f"need at least 2 training and 2 validation labels, have "
                       f"{len(train_ids)} and {len(val_ids)}{note}: more labels or another val_frac")
    return train_ids, val_ids


def check_same_labels(run_dir: Path, dataset, config: TrainConfig, labels: set[str]) -> None:
    """A run resumes on the labels it started with (its checkpoint holds one identity centre
    a training label); refuse, saying what changed and the two ways on, when the data set
    gives others (a batch segmented into the registry since, say)."""
    saved = _read_json(run_dir / "split.json")
    if saved is None:
        return
    before = set(saved["train"]) | set(saved["val"])
    if before == labels:
        return
    added, gone = labels - before, before - labels
    batches = sorted({dataset.batch[label] for label in before if dataset.batch.get(label)})
    changes = [f"{len(added)} new, of batch {', '.join(sorted({dataset.batch[i] for i in added}))}"] if added else []
    changes += [f"{len(gone)} of them not chosen or gone"] if gone else []
    held = " --train-held-out" if before & dataset.held_out and not config.train_held_out else ""
    again = (f"resume it on them with {' '.join(f'--batch {b}' for b in batches)}{held}" if batches
             else "resume it on the data set it had")
    raise PufError(f"{run_dir} was trained on {len(before)} labels, and {config.data} now gives {len(labels)} "
                   f"({'; '.join(changes)}): a run goes on with the labels it started with. Either {again}, or "
                   f"start a new run from its weights on these labels: puf train NEW_RUN --data {config.data} "
                   f"--init {run_dir}")


def embed(model, inputs: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised embeddings and pattern logits of preprocessed inputs."""
    embeddings, logits = [], []
    for i in range(0, len(inputs), batch_size):
        out = model(inputs[i:i + batch_size], training=False)
        embeddings.append(np.asarray(out["embedding"]))
        logits.append(np.asarray(out["pattern_logits"]))
    e = np.concatenate(embeddings)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e, np.concatenate(logits)


def label_centres(model, crops, params: Preprocess, chunk: int = 4096) -> np.ndarray:
    """Each label's mean embedding (unit length), in label index order: the ArcFace centres a
    warm start begins from, so the margin loss measures the init model's own separation from
    the first step instead of pulling random centres towards it."""
    sums: np.ndarray | None = None
    for start in range(0, len(crops), chunk):
        rows = np.arange(start, min(start + chunk, len(crops)))
        embeddings, _ = embed(model, preprocess_all(crops, params, rows))
        if sums is None:
            sums = np.zeros((len(crops.label_ids), embeddings.shape[1]))
        np.add.at(sums, crops.label[rows], embeddings)
    assert sums is not None  # crops are never empty (load_crops refuses)
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


AUGMENTED_VALIDATION = "augmented copies of one capture per label"
OPTIMISTIC_NOTE = ("optimistic: validation queries are augmented copies of the enrolled capture, "
                   "not re-captures")
_COPY = re.compile(r"^(.*)_a\d+$")  # materialized copies: <capture>_a007


def capture_source(name: str) -> str:
    """The capture a crop was made from (a materialized copy names its source)."""
    match = _COPY.match(name)
    return match.group(1) if match else name


class Validation:
    """Held-out labels: first microscope capture enrolled, other captures of the label as
    queries (handheld ones when there are any). Labels with one capture only (the paper's
    recipe) get `copies` fresh augmented copies of it as queries: then the figures are
    optimistic, since a copy shares the capture's focus, exposure and cut, and the report
    says so (`optimistic`, `validation`)."""

    def __init__(self, crops, params: Preprocess, aug=None, copies: int = 4, seed: int = 0) -> None:
        inputs = preprocess_all(crops, params)
        first: dict[int, int] = {}
        for i, (label, name) in enumerate(zip(crops.label, crops.capture, strict=True)):
            if name.startswith("m") and label not in first:
                first[int(label)] = i
        for i, label in enumerate(crops.label):
            first.setdefault(int(label), i)
        enroll = np.array(sorted(first.values()))
        source = {int(crops.label[i]): capture_source(crops.capture[i]) for i in enroll}
        queries = np.array([i for i in range(len(crops))
                            if capture_source(crops.capture[i]) != source[int(crops.label[i])]], np.int64)
        handheld = np.array([i for i in queries if crops.capture[i].startswith("h")], np.int64)
        queries = handheld if len(handheld) else queries
        self.enroll_x, self.enroll_id = inputs[enroll], crops.label[enroll]
        self.optimistic = len(queries) == 0
        if self.optimistic:  # one capture per label: fresh augmented copies of it
            aug = aug or Augment()
            rng = np.random.default_rng(seed)
            queries = np.repeat(enroll, copies)
            self.query_x = np.stack([preprocess(augment(crops.images[i], aug, rng), params) for i in queries])
            self.validation = AUGMENTED_VALIDATION
        else:
            self.query_x = inputs[queries]
            self.validation = "other captures of each label"
        self.query_id, self.query_pattern = crops.label[queries], crops.pattern[queries]

    def run(self, model, far: float) -> dict:
        enroll, _ = embed(model, self.enroll_x)
        query, logits = embed(model, self.query_x)
        genuine, impostor = pair_scores(enroll, self.enroll_id, query, self.query_id)
        report = verification_report(genuine, impostor, (far,))
        report["pattern_accuracy"] = float(np.mean(logits.argmax(1) == self.query_pattern))
        report.update(validation=self.validation, optimistic=self.optimistic)
        return report


def optimistic_note(report: dict) -> str:
    """What a TAR/EER line must add when validation had no re-captures ("" otherwise)."""
    return f" ({OPTIMISTIC_NOTE})" if report.get("optimistic") else ""


@dataclass(kw_only=True)
class TrainReport:
    """A run's last validation, as its eval.json holds it; `to_dict()` is that JSON (and
    `puf train --json`), `describe` its line for people."""

    figures: dict[str, Any] = field(default_factory=dict)  # `trainer.metrics.verification_report`, as written
    pattern_accuracy: float | None = None
    validation: str | None = None  # what the queries were (other captures, or augmented copies)
    optimistic: bool | None = None  # no re-captures: the TAR and EER flatter the model
    step: int | None = None
    train_seconds: float | None = None
    init: dict | None = None  # what the run started from (None: from scratch)

    @classmethod
    def of(cls, written: dict) -> TrainReport:
        """The report of an eval.json's JSON (empty: no validation yet)."""
        typed = {f.name for f in dataclasses.fields(cls)} - {"figures"}
        return cls(figures={k: v for k, v in written.items() if k not in typed},
                   **{k: v for k, v in written.items() if k in typed})

    def to_dict(self) -> dict:
        """eval.json's keys and values (the typed ones after the figures, as `_evaluate` writes them)."""
        typed = {k: v for k, v in asdict(self).items() if k != "figures" and v is not None}
        return {**self.figures, **typed}

    def describe(self, run_dir: Path) -> str:
        row = (self.figures.get("tar_at_far") or [{}])[0]
        return (f"step {self.step}: TAR {row.get('tar')} at FAR {row.get('far')}, EER {self.figures.get('eer')}, "
                f"pattern accuracy {self.pattern_accuracy} (validation labels){optimistic_note(self.to_dict())}; "
                f"model in {run_dir / 'model.keras'}")


def train(config: TrainConfig, run_dir: Path, progress: bool = True,
          max_new_steps: int | None = None, cluster: Cluster | None = None,
          join_timeout: float = JOIN_TIMEOUT_S) -> TrainReport:
    """Train (or resume) into `run_dir`; returns the last validation report.

    With a `cluster` every worker runs this with the same run dir (shared, or the same path
    on each machine when a run resumes): the chief writes there, the other workers write
    to a temporary folder, deleted at the end, as TensorFlow's multi-worker guide does."""
    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir = run_dir if cluster is None or cluster.chief else Path(
        tempfile.mkdtemp(prefix=f"puf-train-worker{cluster.index}-"))
    try:
        return _train(config, run_dir, out_dir, progress, max_new_steps, cluster, join_timeout)
    finally:
        if out_dir != run_dir:
            shutil.rmtree(out_dir, ignore_errors=True)


def _train(config: TrainConfig, run_dir: Path, out_dir: Path, progress: bool,
           max_new_steps: int | None, cluster: Cluster | None, join_timeout: float) -> TrainReport:
    """The recipe: build, restore or warm start, then a plain loop under a run log and a
    stop-on-signal context; whatever ends it, the steps made are saved."""
    import tensorflow as tf


    if config.threads:
        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.threads)
    strategy = join(cluster, join_timeout) if cluster else tf.distribute.get_strategy()
    _check_same_run(config, run_dir, strategy.num_replicas_in_sync)
    data = _prepare_data(config, run_dir, out_dir, progress)
    net = _build(config, strategy, data, out_dir)
    start = _restore_or_warm_start(config, run_dir, out_dir, net, data)
    if net.workers > 1 and not agree(strategy, start):
        worker = cluster.index if cluster else 0
        raise PufError(f"the workers would start at different steps (worker {worker} at {start}): "
                       f"to resume, {run_dir} must hold the chief's checkpoints on every worker "
                       "(a shared folder, the same path everywhere)")
    stream = _stream(config, net, data, start)
    train_step = _step_function(config, net)
    end = config.steps if max_new_steps is None else min(config.steps, start + max_new_steps)
    report: dict = _read_json(out_dir / "eval.json") or {}
    clock = _Clock(float(report.get("train_seconds", 0.0)))
    finished = False
    try:
        with RunLog(out_dir, config.steps, start, progress) as log, stop_on_sigterm() as stopped:
            for step in range(start, end):
                if stopped():
                    break
                values = _one_step(config, net, train_step, stream, step)
                done = step + 1
                log.step(done, values, lr_at(config, step), clock.seconds(), done % ROW_EVERY == 0 or done == end)
                if done % config.checkpoint_every == 0:
                    net.save_checkpoint(done)
                if done % config.eval_every == 0 or done == config.steps:
                    net.sync()
                    seconds = clock.seconds()
                    report = _evaluate(net.model, data.validation, config, out_dir, done, seconds)
                    log.validation(done, report, config.eval_far, seconds, optimistic_note(report))
        finished = True
    finally:
        if net.steps_done() > start:
            _save_at_stop(net, out_dir, report, clock.seconds(), cluster, sync=finished)
    return TrainReport.of(_read_json(out_dir / "eval.json") or {})


def _check_same_run(config: TrainConfig, run_dir: Path, workers: int) -> None:
    """Refuse a global batch the workers cannot share, and a run dir holding a run with
    another configuration (the labels chosen are checked as labels, `check_same_labels`)."""
    if config.batch_size % workers:
        raise PufError(f"batch size {config.batch_size} is the global batch: make it a multiple of "
                       f"the {workers} workers")
    saved = run_dir / CONFIG_NAME
    if saved.exists():
        old = TrainConfig.from_dict(json.loads(saved.read_text()))
        fixed = {k: v for k, v in asdict(config).items()
                 if k not in ("steps", "eval_every", "checkpoint_every", "threads", "batches", "train_held_out")}
        if {k: asdict(old)[k] for k in fixed} != fixed:
            raise PufError(f"{run_dir} holds a run with another configuration; resume it with "
                           f"its own config ({saved}) or choose a new run dir")


@dataclass
class _Data:
    """The run's labels and crops, chosen and loaded before anything is built."""

    params: Preprocess
    init_source: Any  # trainer.warm_start's source of --init (None without)
    train_ids: list[str]
    pattern_set: Any
    train_crops: Any
    validation: Validation


def _prepare_data(config: TrainConfig, run_dir: Path, out_dir: Path, progress: bool) -> _Data:
    """Choose the labels, save the run's config, classes and split beside it, load the crops."""
    import tensorflow as tf


    params = Preprocess.from_dict(config.preprocess)
    init_source = None
    if config.init:
        init_source = read_init(config.init)
        check_architecture(init_source, config)
    dataset = open_dataset(Path(config.data))
    train_ids, val_ids = choose_labels(dataset, config)
    if tf.train.latest_checkpoint(str(run_dir / "ckpt")):
        check_same_labels(run_dir, dataset, config, set(train_ids) | set(val_ids))
    _write_json(out_dir / CONFIG_NAME, asdict(config))
    tf.keras.utils.set_random_seed(config.seed)
    pattern_set = dataset.pattern_set_of(train_ids + val_ids)
    patterns = pattern_set.names
    pattern_set.save(out_dir / PATTERN_SET_FILE)  # the run's classes, for export
    _write_json(out_dir / "split.json", {"train": train_ids, "val": val_ids})
    train_crops = load_crops(dataset, train_ids, patterns, progress=progress)
    validation = Validation(load_crops(dataset, val_ids, patterns), params, Augment(**config.augment),
                            seed=config.seed)
    return _Data(params, init_source, train_ids, pattern_set, train_crops, validation)


@dataclass
class _Net:
    """What the loop trains and saves, built once in the strategy's scope (variables mirrored
    on every worker)."""

    strategy: Any
    model: Any
    arcface: Any
    optimizer: Any
    variables: list
    step: Any  # tf.Variable: the steps done, saved in the checkpoint
    checkpoint: Any
    manager: Any

    @property
    def workers(self) -> int:
        return self.strategy.num_replicas_in_sync

    def steps_done(self) -> int:
        return int(self.step.numpy())

    def sync(self) -> None:
        """Batch-norm statistics: the workers' mean (a no-op on one machine)."""

        average_state(self.strategy, self.model.non_trainable_variables)

    def save_checkpoint(self, step: int) -> None:
        self.sync()
        self.manager.save(checkpoint_number=step)


def _build(config: TrainConfig, strategy, data: _Data, out_dir: Path) -> _Net:
    import keras
    import tensorflow as tf

    from trainer.losses import CombinedMarginLoss

    with strategy.scope():
        model = build_network(config.backbone, data.params.input_shape, config.embedding_dim,
                              len(data.pattern_set.names), config.head_channels, config.pattern_mlp, config.dropout)
        arcface = CombinedMarginLoss(len(data.train_ids), config.embedding_dim, config.s, config.m1,
                                     config.m2, config.m3, config.sample_rate, config.seed)
        if config.train_only == "pattern_head":  # frozen layers also keep their batch-norm statistics
            for layer in model.layers:
                layer.trainable = layer.name in PATTERN_HEAD
        optimizer = keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay)
        variables = model.trainable_variables + [arcface.centres]
        optimizer.build(variables)
        step = tf.Variable(0, dtype=tf.int64, name="step")
    checkpoint = tf.train.Checkpoint(step=step, model=model, centres=arcface.centres, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(out_dir / "ckpt"), max_to_keep=2)
    return _Net(strategy, model, arcface, optimizer, variables, step, checkpoint, manager)


def _restore_or_warm_start(config: TrainConfig, run_dir: Path, out_dir: Path, net: _Net, data: _Data) -> int:
    """The step the run starts at: the last checkpoint's (the chief's, on every worker), or 0
    from --init's weights (and its labels' identity centres), or from scratch."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run_dir / "ckpt"))
    if latest:
        net.checkpoint.restore(latest).assert_existing_objects_matched()
    elif config.init:
        _warm_start(config, out_dir, net, data)
    return net.steps_done()


def _warm_start(config: TrainConfig, out_dir: Path, net: _Net, data: _Data) -> None:
    crops, train_ids = data.train_crops, data.train_ids
    sample = np.random.default_rng(config.seed).permutation(len(crops))[:256]
    record = warm_start(net.model, data.init_source, data.pattern_set,
                        preprocess_all(crops, data.params, np.sort(sample)))
    if config.train_only != "pattern_head":
        centres = label_centres(net.model, crops, data.params)
        known = init_centres(data.init_source)
        kept = [i for i, label in enumerate(train_ids) if label in known]
        for i in kept:
            centres[i] = known[train_ids[i]]
        net.arcface.centres.assign(centres)
        record["identity_centres"] = {"kept": len(kept), "new": len(train_ids) - len(kept),
                                      "new_from": "each label's mean embedding under the init model"}
    _write_json(out_dir / INIT_NAME, record)


def _stream(config: TrainConfig, net: _Net, data: _Data, start: int):
    """The training batches, each worker's shard of the crops, its share of the global batch."""
    def pipeline(context):
        grouping = Grouping(config.batch_patterns, config.per_label) if config.batch_patterns else None
        return training_pipeline(data.train_crops, data.params, Augment(**config.augment),
                                 context.get_per_replica_batch_size(config.batch_size), seed=config.seed + start,
                                 shard=(context.num_input_pipelines, context.input_pipeline_id), grouping=grouping)

    return iter(net.strategy.distribute_datasets_from_function(pipeline))


def _step_function(config: TrainConfig, net: _Net):
    """One optimisation step on every worker: (loss, id_loss, pattern_loss, pattern_acc),
    summed over the workers."""
    import tensorflow as tf

    pattern_loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    workers, strategy = net.workers, net.strategy

    def replica_step(x, labels, pattern, margin_scale):
        with tf.GradientTape() as tape:
            out = net.model(x, training=True)
            id_loss = net.arcface(out["embedding"], labels, margin_scale)
            pat_loss = pattern_loss_fn(pattern, out["pattern_logits"])
            loss = id_loss + config.pattern_weight * pat_loss
            share = loss / workers  # the optimizer sums the workers' gradients
        grads = tape.gradient(share, net.variables)
        net.optimizer.apply_gradients(zip(grads, net.variables, strict=True))
        pat_acc = tf.reduce_mean(tf.cast(
            tf.argmax(out["pattern_logits"], 1, output_type=tf.int32) == pattern, tf.float32))
        return [v / workers for v in (loss, id_loss, pat_loss, pat_acc)]

    @tf.function
    def train_step(x, labels, pattern, margin_scale):
        values = strategy.run(replica_step, args=(x, labels, pattern, margin_scale))
        return [strategy.reduce("SUM", v, axis=None) for v in values]

    return train_step


def _one_step(config: TrainConfig, net: _Net, train_step, stream, step: int) -> list[float]:
    """Step `step` (its learning rate, its margin ramp); PufError when the loss is not finite."""
    import tensorflow as tf

    net.optimizer.learning_rate.assign(lr_at(config, step))
    ramp = min(1.0, step / config.margin_warmup_steps) if config.margin_warmup_steps else 1.0
    x, labels, pattern = next(stream)
    values = [float(v) for v in train_step(x, labels, pattern, tf.constant(ramp, tf.float32))]
    if not math.isfinite(values[0]):
        raise PufError(f"the loss became {values[0]} at step {step}: lower the learning "
                       "rate or the margin (or ramp it in: margin_warmup_steps)")
    net.step.assign(step + 1)
    return values


class _Clock:
    """The run's training seconds: its earlier sessions' and this one's."""

    def __init__(self, before: float) -> None:
        self.before, self.since = before, time.monotonic()

    def seconds(self) -> float:
        return self.before + time.monotonic() - self.since


@contextmanager
def stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """Yield a function saying whether SIGTERM came: the loop stops at the next step and the
    run is saved. Only the main thread can catch signals; elsewhere it never says so."""
    came = threading.Event()
    try:
        old_handler = signal.signal(signal.SIGTERM, lambda signum, frame: came.set())
    except ValueError:
        old_handler = None
    try:
        yield came.is_set
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


def _save_at_stop(net: _Net, out_dir: Path, report: dict, seconds: float, cluster: Cluster | None,
                  sync: bool) -> None:
    """The checkpoint, the model and eval.json of a run that made steps, however it ended;
    `sync` only when every worker got here (a worker that stopped alone must not wait)."""
    if sync:
        net.sync()
    net.manager.save(checkpoint_number=net.steps_done())
    net.model.save(out_dir / "model.keras")
    status = {**report, **_init_record(out_dir), "step": net.steps_done(), "train_seconds": round(seconds, 1)}
    if cluster:
        status.update(workers=net.workers, worker=cluster.index, weights_sha256=weights_digest(net.model))
    _write_json(out_dir / "eval.json", status)


def weights_digest(model) -> str:
    """sha256 of every weight of the model, in order: equal on every worker of a run."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def _evaluate(model, validation: Validation, config: TrainConfig, run_dir: Path, step: int, seconds: float) -> dict:
    """The validation report at `step`, saved with the model it measured."""
    report = validation.run(model, config.eval_far)
    report.update(step=step, train_seconds=round(seconds, 1))
    report.update(_init_record(run_dir))
    model.save(run_dir / "model.keras")
    _write_json(run_dir / "eval.json", report)
    return report


def _init_record(run_dir: Path) -> dict:
    """{"init": what the run started from} for its eval.json, or {} for a run from scratch."""
    init = _read_json(run_dir / INIT_NAME)
    return {"init": init} if init else {}


def _write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=1))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
