"""The enrolled fingerprints: how the database is made, cached and opened.

1. **Labels**: simulated batches (`trainer.simdata`, film seeds the shipped model never saw)
   photographed once each by the simulated microscope and cut at their corners, as the
   factory enrolls them (`plan.enrolled_batches`).
2. **Real fingerprints**: every label's crop plus `augmented - 1` copies made with the
   paper's augmentation (rotation uniform in 0-360, HSV V shift in (-45, 90):
   `trainer.enroll.variants`), each through the shipped model (int8, the device runtime).
3. **Fill** to the database size: the real fingerprints under random rotations of the
   embedding space, one rotation per block of the real labels. Each block keeps the exact
   geometry of real labels and their augmented copies; blocks are independent of each
   other and of every query (a rotated label is near-orthogonal to everything real).
   With 6,000 real labels x 100 copies this makes the paper's 41,556 labels x 100 =
   4,155,600 vectors.
4. **Shards**: per pattern class, planned, built and tuned by enrollment's own code
   (`trainer.enroll.update_shard`, memory budget as `puf enroll`), written as the device
   reads them and opened memory-mapped (`edge_app.shards`).

Everything expensive is cached under the cache folder by what it depends on, so a re-run
(or a larger run sharing batches) resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_app.atomic_write import replacing
from edge_app.bundle import Bundle
from edge_app.bundle_format import MANIFEST, ROWS_SHARDS_FORMAT, SHARDS_FORMAT, Manifest, Shards
from edge_app.errors import PufError
from edge_app.preprocess import preprocess_batch
from edge_app.runtime import ModelRunner
from edge_app.shards import ShardSet
from fabrication.sim.label_render import label_crops
from trainer.enroll import (
    DEFAULT_RECALL,
    EnrollOptions,
    bundle_templates,
    index_budget_per_vector,
    save_shard,
    update_shard,
    variants,
)
from trainer.harness.bench.plan import BenchPlan, enrolled_batches
from trainer.index_build import SPREAD_SHARE
from trainer.simdata import SimSpec, make_film, make_layout

CROP_CHUNK = 60  # labels a worker embeds at a time (6,000 vectors at 100 copies)
RENDER_RECIPE = "label_render, 1 capture"  # in the labels' cache key: crops of another renderer are made again
SYNTHETIC_PREFIX = "R"  # rotated copies: R<block>-<real label id>
ID_BYTES = 16  # a label id in the shards' id maps, as enrollment counts it
# in the shards' cache key: shards built before it are rebuilt
SHARDS_RECIPE = f"nprobe tuned by label to recall {DEFAULT_RECALL:g}, genuine-like {SPREAD_SHARE:g} along the spread"


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_key(bundle: Path) -> str:
    manifest = Manifest.read(bundle).to_dict()  # the cache key as it always was: files and preprocessing
    return key(manifest.get("files"), manifest.get("preprocessing"))


@dataclass(frozen=True)
class Labels:
    """Enrolled real labels, in order: id, pattern, and where the crop is."""

    ids: list[str]
    patterns: list[str]
    crops: np.ndarray  # (n, side, side, 3) uint8 microscope crops, canonical orientation

    def __len__(self) -> int:
        return len(self.ids)


# ---- rendering ------------------------------------------------------------------------

def _render_batch(job: tuple[dict, list[int], str]) -> str:
    """Worker: one microscope crop of every label of one batch, saved as .npz. Each crop is
    rendered on a window around its label (`fabrication.sim.label_render`: the factory's
    capture and cut, its score distributions shown equal to field-rendered crops in
    tools/results/label_render.json), about 3 times faster than whole fields."""
    spec_dict, numbers, out = job
    spec = SimSpec(**spec_dict)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    ids, patterns, crops = [], [], []
    for number in numbers:
        field, slot = divmod(number, layout.labels_per_field)
        ids.append(layout.label_id(field, slot))
        patterns.append(layout.pattern_of(field, slot))
        crops.append(label_crops(film, layout, field, slot, spec.seed * 1000, 1, spec.crop_size,
                                 jitter_px=spec.corner_jitter_px)[0])
    with replacing(Path(out), suffix=".npz") as tmp:
        np.savez(tmp, ids=np.array(ids), patterns=np.array(patterns), crops=np.stack(crops))
    return out


def pool_map(function, jobs: list, workers: int, desc: str, unit: str, initializer=None, initargs=()) -> list:
    """`function` over `jobs` in `workers` spawned processes, with a progress bar."""
    results = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, smoothing=0.05) as bar:
        if workers <= 1 or len(jobs) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for job in jobs:
                results.append(function(job))
                bar.update()
        else:
            with mp.get_context("spawn").Pool(workers, initializer, initargs) as pool:
                for result in pool.imap(function, jobs):
                    results.append(result)
                    bar.update()
    return results


def enrolled_labels(plan: BenchPlan, cache: Path) -> Labels:
    """The first `plan.labels` labels of the enrolled batches, rendered once and cached."""
    folder = Path(cache) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    specs = enrolled_batches(plan)
    paths = [folder / f"{s.batch_id}-{key(asdict(s), RENDER_RECIPE, numbers)}.npz" for s, numbers in specs]
    todo = [(asdict(s), numbers, str(p)) for (s, numbers), p in zip(specs, paths, strict=True) if not p.exists()]
    if todo:
        pool_map(_render_batch, todo, min(plan.workers, len(todo)), "microscope: enrolled batches", "batch")
    ids, patterns, crops = [], [], []
    for path in paths:
        with np.load(path) as data:
            ids += data["ids"].tolist()
            patterns += data["patterns"].tolist()
            crops.append(data["crops"])
    return Labels(ids, patterns, np.concatenate(crops))


# ---- real fingerprints -------------------------------------------------------------------

_RUNNER = None


def _init_runner(bundle: str, threads: int) -> None:
    global _RUNNER
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    _RUNNER = ModelRunner.from_bundle(Path(bundle), "int8", threads)


def _embed_chunk(job: tuple[np.ndarray, int, int, int, str]) -> str:
    """Worker: fingerprints of every augmented copy of a chunk of crops (label-major)."""
    crops, first, augmented, seed, out = job
    options = EnrollOptions(augmented=augmented) if augmented > 1 else EnrollOptions()
    assert _RUNNER is not None  # every pool worker starts with _init_runner
    chunks = []
    for i, crop in enumerate(crops):
        rng = np.random.default_rng([seed, first + i])
        copies = variants(crop, options, rng)
        chunks.append(_RUNNER.run(preprocess_batch(copies, _RUNNER.preprocess)).embedding)
    with replacing(Path(out), suffix=".npy") as tmp:
        np.save(tmp, np.concatenate(chunks).astype(np.float32))
    return out


def real_fingerprints(plan: BenchPlan, labels: Labels, bundle: Path, cache: Path) -> np.ndarray:
    """(labels x augmented, d) fingerprints, label-major, cached in chunks."""
    folder = Path(cache) / f"vectors-{key(model_key(bundle), plan.augmented, plan.seed)}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for first in range(0, len(labels), CROP_CHUNK):
        ids = labels.ids[first:first + CROP_CHUNK]
        path = folder / f"{ids[0]}-{key(ids)}.npy"
        paths.append(path)
        if not path.exists():
            jobs.append((labels.crops[first:first + CROP_CHUNK], first, plan.augmented, plan.seed, str(path)))
    if jobs:
        # one model thread a worker: the augmentation runs beside the model instead of before it
        pool_map(_embed_chunk, jobs, plan.workers, f"model: {plan.real_vectors:,} enrolled fingerprints",
                 "chunk", _init_runner, (str(bundle), 1 if plan.workers > 1 else 2))
    return np.concatenate([np.load(p) for p in paths])


# ---- the fill ------------------------------------------------------------------------------

def rotation(d: int, block: int, seed: int) -> np.ndarray:
    """A random orthogonal d x d matrix (Haar), one per block."""
    q, r = np.linalg.qr(np.random.default_rng([seed, block, 0x207]).standard_normal((d, d)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def fill_blocks(plan: BenchPlan) -> list[int]:
    """Labels taken into each rotated block (all of them, then the remainder)."""
    missing = (plan.vectors - plan.real_vectors) // plan.augmented
    full, rest = divmod(missing, plan.labels)
    return [plan.labels] * full + ([rest] if rest else [])


def rotated_blocks(plan: BenchPlan, d: int) -> list[tuple[int, np.ndarray]]:
    """Each stand-in block: how many real labels it takes (the first ones) and its rotation."""
    return [(taken, rotation(d, b + 1, plan.seed)) for b, taken in enumerate(fill_blocks(plan))]


def database_rows(plan: BenchPlan, real: np.ndarray) -> Iterator[np.ndarray]:
    """The whole database in row order: the real fingerprints (label-major), then each block."""
    yield real
    for taken, turn in rotated_blocks(plan, real.shape[1]):
        yield real[: taken * plan.augmented] @ turn.T


def label_of(rows: np.ndarray, plan: BenchPlan) -> np.ndarray:
    """The label of a row of `database_rows`, as a number: block x labels + the label's place."""
    rows = np.asarray(rows, np.int64)
    return (rows // plan.real_vectors) * plan.labels + (rows % plan.real_vectors) // plan.augmented


def describe(plan: BenchPlan, labels: Labels) -> str:
    """How the database was made, in words (for the report)."""
    blocks = fill_blocks(plan)
    synthetic = sum(blocks) * plan.augmented
    text = (f"{plan.real_vectors:,} real fingerprints: {len(labels):,} distinct simulated labels (each its own film "
            f"region; film seeds {', '.join(str(s.film_seed) for s, _ in enrolled_batches(plan))}, never seen in "
            f"training), one simulated microscope capture each cut at its corners, "
            + (f"x {plan.augmented} copies (the crop and {plan.augmented - 1} with the paper's augmentation: rotation "
               f"0-360, HSV V shift in (-45, 90))" if plan.augmented > 1 else
               "enrolled once (the crop alone, as `puf enroll` does by default)")
            + ", each through the shipped int8 model")
    if plan.patterns:
        text += (f"; labels of the first {plan.patterns} pattern classes only (the counterfeit photos too), so each "
                 f"of their shards holds about {plan.labels / plan.patterns:,.0f} distinct labels, as a database of "
                 f"all the pattern classes would at {plan.labels // plan.patterns:,} labels a class")
    if synthetic:
        text += (f"; plus {synthetic:,} vectors of {sum(blocks):,} stand-in labels: the real fingerprints under "
                 f"{len(blocks)} random rotations of the embedding space (each block keeps the real labels' and "
                 f"copies' geometry and pattern; blocks are independent of each other and of every query). "
                 f"Stand-ins show capacity, memory and search time only: no query can come near them, so every "
                 f"accuracy figure is of the {len(labels):,} distinct labels")
    labels_total = len(labels) + sum(blocks)
    return text + f". In all {plan.vectors:,} vectors of {labels_total:,} labels in per-pattern shards."


# ---- shards ----------------------------------------------------------------------------

def pattern_vectors(plan: BenchPlan, labels: Labels, real: np.ndarray, pattern: str) -> tuple[np.ndarray, list[str]]:
    """One pattern's enrolled fingerprints and their label ids, in its shard's order: its real
    labels' copies, then each stand-in block's (the float vectors its index codes)."""
    rows = np.flatnonzero(np.array(labels.patterns) == pattern)
    parts = [real[(rows[:, None] * plan.augmented + np.arange(plan.augmented)).ravel()]]
    ids = [labels.ids[r] for r in rows for _ in range(plan.augmented)]
    for b, (taken, turn) in enumerate(rotated_blocks(plan, real.shape[1])):
        mine = rows[rows < taken]
        parts.append(real[(mine[:, None] * plan.augmented + np.arange(plan.augmented)).ravel()] @ turn.T)
        ids += [f"{SYNTHETIC_PREFIX}{b + 1}-{labels.ids[r]}" for r in mine for _ in range(plan.augmented)]
    return np.ascontiguousarray(np.concatenate(parts), np.float32), ids


def build_shards(plan: BenchPlan, labels: Labels, real: np.ndarray, bundle: Path, cache: Path,
                 memory_budget_mb: float) -> Path:
    """Per-pattern shards of the whole database (real + rotated blocks), built once."""
    manifest = Manifest.read(bundle)
    name = key(model_key(bundle), plan.augmented, plan.vectors, plan.seed, memory_budget_mb, labels.ids,
               SHARDS_RECIPE)
    folder = Path(cache) / f"shards-{name}"
    done = folder / "shards.json"
    if done.exists():
        return folder
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    classes = list(manifest.pattern_classes or [])
    d = int(manifest.embedding_dim or 0)
    threshold = manifest.threshold
    if threshold is None:
        raise PufError(f"{bundle} has no calibrated threshold: export it from an evaluated run")
    budget = index_budget_per_vector(manifest, memory_budget_mb, plan.vectors, ID_BYTES)
    options = EnrollOptions(augmented=plan.augmented, memory_budget_mb=memory_budget_mb, seed=plan.seed)
    section: dict[str, Any] = {"format": SHARDS_FORMAT, "metric": "inner_product", "embedding_dim": d,
                               "model_format": "int8", "classes": {}, "memory_budget_mb": memory_budget_mb}
    for pattern in tqdm([p for p in classes if p in set(labels.patterns)], desc="shards: plan, build, tune",
                        unit="shard"):
        vectors, ids = pattern_vectors(plan, labels, real, pattern)
        index, id_map, entry = update_shard(None, np.zeros(0, "S1"), vectors, ids, budget, options, threshold)
        section["classes"][pattern] = {**save_shard(index, id_map, classes.index(pattern), folder.joinpath), **entry}
    section["format"] = Shards.from_dict({**section, "format": ROWS_SHARDS_FORMAT}, MANIFEST).format_needed()
    section["vectors"] = sum(e["vectors"] for e in section["classes"].values())
    section["labels"] = sum(e["labels"] for e in section["classes"].values())
    done.write_text(json.dumps(section, indent=1))
    return folder


def open_database(bundle: Path, shards: Path):
    """The shipped model's bundle with the benchmark's shards, as `edge_app.bundle.Bundle`
    (shards memory-mapped, the pattern templates enrollment writes)."""
    manifest = Manifest.read(bundle)
    manifest.shards = Shards.from_dict(json.loads((Path(shards) / "shards.json").read_text()), MANIFEST)
    return Bundle(Path(bundle), manifest, None, ShardSet.load(Path(shards), manifest.shards),
                  bundle_templates(Path(bundle), manifest))


def source_label(label_id: str) -> str:
    """The real label a stand-in (rotated) label was made from; a real label is its own."""
    if label_id.startswith(SYNTHETIC_PREFIX) and "-" in label_id and label_id.split("-", 1)[0][1:].isdigit():
        return label_id.split("-", 1)[1]
    return label_id
