"""Label-crop data sets, split by LABEL, and the tf.data pipeline that feeds training.

A folder data set is what `trainer.simdata` writes and what real crops can be dropped
into::

    ROOT/labels.csv            label_id,batch,pattern   (one row per label)
    ROOT/crops/LABEL_ID/*.png  every capture of that label (canonical orientation), or
    ROOT/crops/LABEL_ID.png    its one capture (the way `puf segment` names crops)

Labels are split into train / validation / held-out by a hash of the label id, so a
label never moves between splits when the data set grows, and the labels a model is
evaluated on are never seen in training (new batches are enrolled without retraining).
A run can be limited to some batches by name; a registry's labels held out for calibration
(status held_out) are left out unless asked for.
"""

from __future__ import annotations

import csv
import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_app.errors import PufError
from edge_app.pattern_set import PatternSet
from edge_app.preprocess import Preprocess, preprocess
from fabrication.registry import Registry
from trainer.augment import PAPER, Augment, augment
from trainer.images import read_bgr
from trainer.pattern_sets import batch_pattern_set, folder_pattern_set, merged

SPLITS = ("train", "val", "test")


def split_of(label_id: str, val_frac: float, test_frac: float) -> str:
    """The split a label belongs to, from a hash of its id (stable as data grows)."""
    u = int.from_bytes(hashlib.sha256(label_id.encode()).digest()[:8], "big") / 2.0**64
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


class FolderDataset:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        table = self.root / "labels.csv"
        if not table.exists():
            raise PufError(f"{self.root} is not a crop data set: no labels.csv "
                           "(label_id,batch,pattern); render one with puf simdata")
        self.pattern: dict[str, str] = {}
        self.batch: dict[str, str] = {}
        with table.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"label_id", "pattern"} - set(reader.fieldnames or ())
            if missing:
                raise PufError(f"{table} lacks columns {sorted(missing)}")
            for row in reader:
                self.pattern[row["label_id"]] = row["pattern"]
                self.batch[row["label_id"]] = row.get("batch") or ""
        crops_dir = self.root / "crops"
        self.crops: dict[str, list[Path]] = {}
        for label_id in self.pattern:
            paths = sorted((crops_dir / label_id).glob("*.png"))
            single = crops_dir / f"{label_id}.png"
            paths = paths or ([single] if single.exists() else [])
            if paths:
                self.crops[label_id] = paths
        if not self.crops:
            raise PufError(f"no crops under {crops_dir}")
        self.pattern_set = folder_pattern_set(self.root)
        self.held_out: set[str] = set()  # labels kept back for calibration (a registry's status)

    def labels(self, split: str | None = None, val_frac: float = 0.05, test_frac: float = 0.0,
               batches: tuple[str, ...] = (), held_out: bool = True) -> list[str]:
        """The labels of `split` (all: None), of `batches` only when given, without the
        held-out ones unless `held_out`."""
        if split is not None and split not in SPLITS:
            raise PufError(f"split must be one of {SPLITS}, got {split!r}")
        return [label for label in sorted(self.crops)
                if (not batches or self.batch[label] in batches) and (held_out or label not in self.held_out)
                and (split is None or split_of(label, val_frac, test_frac) == split)]

    def pattern_set_of(self, label_ids: list[str]) -> PatternSet:
        """The glyph classes a run on `label_ids` learns: a folder data set has one set."""
        return self.pattern_set


class RegistryDataset(FolderDataset):
    """Crops recorded in a factory registry (`puf segment`): one crop per usable label
    (status found or enrolled; held-out labels are kept out, `puf hold-out`), found under the
    batch folder it was segmented from. Same interface as a folder data set."""

    STATUSES = ("found", "enrolled", "held_out")  # held-out ones kept apart: `held_out`

    def __init__(self, path: Path) -> None:
        self.root = Path(path)
        if not self.root.exists():
            raise PufError(f"no registry at {self.root}")
        with Registry(self.root) as registry:
            records = [r for status in self.STATUSES for r in registry.labels(status=status)]
            sets = {batch: batch_pattern_set(registry.batch_layout(batch)) for batch in {r.batch_id for r in records}}
        db = sqlite3.connect(f"file:{self.root}?mode=ro", uri=True)
        try:
            sources = dict(db.execute("SELECT batch_id, source FROM batches").fetchall())
        finally:
            db.close()
        self.pattern, self.batch, self.crops = {}, {}, {}
        for record in records:
            if not record.crop_path or not record.pattern or sets[record.batch_id] is None:
                continue
            base = Path(sources.get(record.batch_id) or self.root.parent / record.batch_id)
            path = base / record.crop_path
            if path.exists():
                self.pattern[record.label_id] = record.pattern
                self.batch[record.label_id] = record.batch_id
                self.crops[record.label_id] = [path]
        if not self.crops:
            raise PufError(f"the registry {self.root} lists no label crops with a pattern that exist on disk "
                           "(segment with the batch's pattern set so that every label's glyph is read)")
        self.held_out = {r.label_id for r in records if r.status == "held_out" and r.label_id in self.crops}
        self._sets = sets
        self.pattern_set = self.pattern_set_of(list(self.crops))

    def pattern_set_of(self, label_ids: list[str]) -> PatternSet:
        """The glyphs of the batches `label_ids` come from, merged (a run on some batches
        learns their glyphs, not those of every batch in the registry)."""
        batches = sorted({self.batch[label] for label in label_ids})
        sets = [self._sets[b] for b in batches]
        unknown = [b for b, s in zip(batches, sets, strict=True) if s is None]
        if unknown:
            raise PufError(f"the glyphs of batch {', '.join(unknown)} in the registry {self.root} are unknown "
                           "(images recorded without their patterns): nothing to learn them from")
        return merged([s for s in sets if s is not None], f"the registry {self.root}")


def open_dataset(path: Path) -> FolderDataset:
    """A folder data set, or a registry file (*.sqlite)."""
    path = Path(path)
    return RegistryDataset(path) if path.suffix in (".sqlite", ".db") else FolderDataset(path)


@dataclass
class CropArrays:
    """Crops in memory: images (N, S, S, 3) uint8, label index, pattern index, capture name."""

    images: np.ndarray
    label: np.ndarray
    pattern: np.ndarray
    capture: list[str]
    label_ids: list[str]

    def __len__(self) -> int:
        return len(self.label)


def load_crops(dataset: FolderDataset, label_ids: list[str], pattern_names: list[str],
               captures: str | None = None, progress: bool = False) -> CropArrays:
    """Read the crops of some labels; `captures` keeps only names starting with it
    (for example "m" for microscope captures, "h" for handheld)."""
    index = {name: i for i, name in enumerate(pattern_names)}
    images, labels, patterns, names = [], [], [], []
    size = None
    for i, label_id in enumerate(tqdm(label_ids, desc="loading crops", unit="label",
                                      disable=not progress)):
        pattern = dataset.pattern[label_id]
        if pattern not in index:
            raise PufError(f"label {label_id} has pattern {pattern!r}, not one of the "
                           f"{len(pattern_names)} classes")
        for path in dataset.crops[label_id]:
            if captures and not path.stem.startswith(captures):
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise PufError(f"cannot read crop {path}")
            size = size or image.shape
            if image.shape != size:
                image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            images.append(image)
            labels.append(i)
            patterns.append(index[pattern])
            names.append(path.stem)
    if not images:
        raise PufError("no crops selected")
    return CropArrays(np.stack(images), np.array(labels, np.int32),
                      np.array(patterns, np.int32), names, list(label_ids))


@dataclass(frozen=True)
class Grouping:
    """How `grouped_batches` fills a batch: `patterns` pattern classes, and `per_label`
    captures of each label drawn (so a batch holds same-label pairs and, above all,
    labels of the same pattern side by side: the pairs that decide false accepts, since
    the device compares a photo only with labels of its own pattern)."""

    patterns: int
    per_label: int = 2


def grouped_batches(crops: CropArrays, batch_size: int, grouping: Grouping,
                    rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless batches of crop indices, `batch_size` each: `grouping.patterns` pattern
    classes drawn at random (weighted by their crops), their share of the batch filled
    with labels of that pattern, `grouping.per_label` captures each (fewer when a label
    has fewer)."""
    if grouping.patterns < 1 or grouping.per_label < 1:
        raise PufError(f"a grouped batch needs >= 1 pattern and >= 1 capture a label, got {grouping}")
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(crops.label.tolist()):
        by_label.setdefault(label, []).append(i)
    by_pattern: dict[int, list[int]] = {}
    for label, rows in by_label.items():
        by_pattern.setdefault(int(crops.pattern[rows[0]]), []).append(label)
    names = np.array(sorted(by_pattern))
    weight = np.array([sum(len(by_label[x]) for x in by_pattern[p]) for p in names], float)
    chosen = min(grouping.patterns, len(names))
    while True:
        batch: list[int] = []
        picked = rng.choice(names, chosen, replace=False, p=weight / weight.sum())
        for n, pattern in enumerate(picked):
            share = batch_size * (n + 1) // chosen - batch_size * n // chosen
            batch.extend(_fill(by_pattern[int(pattern)], by_label, share, grouping.per_label, rng))
        yield np.array(batch, np.int64)


def _fill(labels: list[int], by_label: dict[int, list[int]], share: int, per_label: int,
          rng: np.random.Generator) -> list[int]:
    """`share` crops of some of `labels`, `per_label` captures each; a pattern with too few
    labels comes round again with their other captures, and repeats a crop only when it
    has no capture left unused."""
    taken: list[int] = []
    unused: dict[int, list[int]] = {}
    while len(taken) < share:
        added = len(taken)
        for label in rng.permutation(labels).tolist():
            if label not in unused:
                unused[label] = rng.permutation(by_label[label]).tolist()
            take = min(per_label, len(unused[label]), share - len(taken))
            taken.extend(unused[label][:take])
            del unused[label][:take]
            if len(taken) == share:
                break
        if len(taken) == added:  # every capture used: start over
            unused.clear()
    return taken


def training_pipeline(crops: CropArrays, params: Preprocess, aug: Augment, batch_size: int,
                      seed: int = 0, shard: tuple[int, int] = (1, 0), grouping: Grouping | None = None):
    """An endless, shuffled tf.data stream of (input, label, pattern) batches: every
    sample freshly augmented, then put through the device's own `preprocess`.
    `shard` (count, index): this worker's crops only, and augmentations of its own.
    `grouping`: batches of a few patterns' labels (`grouped_batches`) instead of a shuffle."""
    import tensorflow as tf

    count, index = shard
    if len(crops) < count:
        raise PufError(f"{len(crops)} training crops cannot be shared among {count} workers")

    images, labels, patterns = crops.images, crops.label, crops.pattern
    size = params.input_size

    def make(index, sample_seed):
        rng = np.random.default_rng(int(sample_seed))
        return preprocess(augment(images[int(index)], aug, rng), params)

    def load(index, sample_seed):
        x = tf.numpy_function(make, [index, sample_seed], tf.float32, stateful=False)
        x.set_shape((size, size, 1))
        return x, tf.gather(labels, index), tf.gather(patterns, index)

    if grouping:  # each worker draws its own batches from every crop
        rng = np.random.default_rng([seed, index, 0x6A0])
        indices = tf.data.Dataset.from_generator(
            lambda: grouped_batches(crops, batch_size, grouping, rng),
            output_signature=tf.TensorSpec((batch_size,), tf.int64)).unbatch()
    else:
        indices = tf.data.Dataset.range(len(crops)).shard(count, index).repeat().shuffle(
            min(len(crops), 50_000), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed + 7919 * index)
    stream = tf.data.Dataset.zip(indices, seeds)
    # grouped batches stay whole only in order
    return (stream.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=grouping is not None)
            .batch(batch_size, drop_remainder=True).prefetch(2))


def preprocess_all(crops: CropArrays, params: Preprocess, rows: np.ndarray | None = None) -> np.ndarray:
    """Every crop (or those of `rows`) through the device's preprocessing, unaugmented:
    (N, size, size, 1)."""
    images = crops.images if rows is None else crops.images[rows]
    return np.stack([preprocess(image, params) for image in images])


def materialize(root, out, copies: int, aug: Augment = PAPER,
                seed: int = 0, progress: bool = True, batches: tuple[str, ...] = (), held_out: bool = False) -> int:
    """Write `copies` augmented copies of every crop of a data set (of `batches` only when given;
    labels held out for calibration only with `held_out`, since the copies no longer say so), as
    the paper did (100 copies, full rotation), into a new folder data set; returns files written."""
    dataset = open_dataset(Path(root))
    out = Path(out)
    written = 0
    label_ids = dataset.labels(batches=batches, held_out=held_out)
    for label_id in tqdm(label_ids, desc="materializing", unit="label", disable=not progress):
        folder = out / "crops" / label_id
        folder.mkdir(parents=True, exist_ok=True)
        for path in dataset.crops[label_id]:
            crop = read_bgr(path)
            rng = np.random.default_rng([seed, written])
            for k in range(copies):
                name = folder / f"{path.stem}_a{k:03d}.png"
                if not name.exists():
                    cv2.imwrite(str(name), augment(crop, aug, rng))
                written += 1
    out.mkdir(parents=True, exist_ok=True)
    rows = ["label_id,batch,pattern"] + [f"{label},{dataset.batch[label]},{dataset.pattern[label]}"
                                         for label in label_ids]
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return written
