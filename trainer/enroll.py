"""Enrollment: embed label crops with a bundle's own model and add them to its per-pattern
Faiss shards, writing a new signed version of the bundle.

Labels come from the factory's registry (``registry.sqlite``: labels segmented and not
held out, crops beside their batch) or from a folder data set (``labels.csv`` with
label_id,pattern and ``crops/LABEL_ID.png`` or ``crops/LABEL_ID/*.png``). Each crop is
embedded once in canonical orientation by default; ``rotations`` enrolls that many turned
copies (for crops whose orientation cannot be fixed), ``augmented`` the paper's augmented
copies (rotation 0-360, HSV V shift), for comparison.

Incremental: labels already in the bundle are skipped (enrolling a batch twice adds
nothing), and so are labels on its revocation list (`edge_app.revocations`: a revoked label
is never enrolled again), only the shards of the patterns that gain labels are rewritten, and a shard
gains labels by appending to its index unless it has outgrown its index type (exact ->
IVF) or cell count, when it is rebuilt from its own decoded vectors plus the new ones:
nothing already enrolled is embedded again. Every written shard's search is re-tuned
(`trainer.index_build.tune`). See `trainer.bundle_write` for how the new version replaces
the old. With a fingerprint store (`trainer.fingerprint_store`, Milvus) the fingerprints also
go there, from which `trainer.region_export` builds each region's bundle with the shard
writer below.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from edge_app.bundle_format import (
    MANIFEST,
    SHARDS_FORMAT,
    TEMPLATES,
    THUMBNAIL_CHANNEL,
    Decision,
    Manifest,
    ShardEntry,
    ShardRows,
    Shards,
    rows_path,
    shard_paths,
    thumbnail_path,
)
from edge_app.errors import PufError
from edge_app.folder_swap import home_of
from edge_app.ids import check_id
from edge_app.layout import BatchLayout, parse_label_id
from edge_app.orientation import PatternTemplates
from edge_app.preprocess import MIN_CROP_PX, preprocess_batch
from edge_app.revocations import Revoked
from edge_app.runtime import ModelRunner
from edge_app.shards import Reranked, faiss_index, open_index, set_search_params, stored_vectors
from edge_app.thumbnails import make_thumbnail
from fabrication.patterns import pattern_templates
from fabrication.registry import Registry
from trainer import index_build
from trainer.augment import NONE, augment
from trainer.bundle_write import BundleUpdate, bundle_lock, read_for_update
from trainer.fingerprint_store import FingerprintStore, collection_name
from trainer.keys import check_valid_days
from trainer.pattern_sets import batch_pattern_set, bundle_pattern_set, check_model_knows, folder_pattern_set

if TYPE_CHECKING:
    from trainer.fingerprint_store import StoreTarget
    from trainer.keys import SigningKey

DEFAULT_BUDGET_MB = 1400.0  # shards, id maps and models together, on the device
# recall@1 of exact search the shards are tuned for: a search miss is a genuine label refused,
# so misses stay below the 0.1% genuine-miss goal
DEFAULT_RECALL = 0.999
# a genuine re-capture of a trained model sits well above this cosine to its label
DEFAULT_GENUINE_COSINE = 0.5
# the most a shard's index may raise a score above the exact one (`index_build.score_error`):
# the threshold was calibrated on exact scores, and a counterfeit's score rounded up past it is
# accepted. 8-bit codes stay within it (IVF-SQ8: at most 0.0026 on a paper-size shard of 94,445 fingerprints,
# tools/results/bench_device_memory.json); IVF-PQ64 moved scores by up to 0.107 there.
MAX_SCORE_RISE = 0.005


@dataclass(frozen=True)
class EnrollItem:
    label_id: str
    pattern: str
    crop: Path
    sha256: str | None = None  # the registry's record of the crop's bytes


@dataclass(frozen=True)
class EnrollOptions:
    rotations: int = 1
    augmented: int = 0
    memory_budget_mb: float = DEFAULT_BUDGET_MB  # shards, id maps and models together
    capacity: int = 0  # plan the index codes for this many vectors (0: those enrolled)
    exact_max: int = index_build.EXACT_MAX
    target_recall: float = DEFAULT_RECALL
    genuine_cosine: float | None = None  # None: the bundle's threshold, within 0.3-0.9
    batch_size: int = 64
    model_format: str | None = None  # None: the bundle's default format
    seed: int = 0
    thumbnails: int = 0  # PX: a PX x PX thumbnail of each label (`edge_app.thumbnails`); 0: as the bundle has
    valid_days: float | None = None  # the signed bundle expires this many days after signing; None: as it was
    # write shards whose scores rise above exact ones by more than MAX_SCORE_RISE, marking the
    # threshold not calibrated (False: refuse them)
    accept_approximate_scores: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.rotations <= 360:
            raise PufError(f"--rotations must be 1-360, got {self.rotations}")
        if not 0 <= self.augmented <= 1000:
            raise PufError(f"--augmented must be 0-1000, got {self.augmented}")
        if self.rotations > 1 and self.augmented:
            raise PufError("give --rotations or --augmented, not both")
        if self.memory_budget_mb <= 0:
            raise PufError("the memory budget must be positive")
        if not 0.5 <= self.target_recall <= 1.0:
            raise PufError(f"target recall {self.target_recall} must lie in 0.5-1")
        if self.thumbnails and not 16 <= self.thumbnails <= 256:
            raise PufError(f"--thumbnails must be 16-256 px, got {self.thumbnails}")
        if self.valid_days is not None:
            check_valid_days(self.valid_days)

    @property
    def copies(self) -> int:
        return self.augmented or self.rotations


@dataclass
class Skipped:
    reasons: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, reason: str, label_id: str) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, label_id)


# ---- where labels come from ------------------------------------------------------------

def items_from_registry(path: Path, batches: tuple[str, ...] = ()) -> tuple[list[EnrollItem], Skipped]:
    """Segmented labels of the registry (status found or enrolled), not held out."""
    skipped = Skipped()
    items = []
    with Registry(path) as registry:
        sources = _batch_sources(path, sqlite3)
        for label in registry.labels():
            if batches and label.batch_id not in batches:
                continue
            if label.status not in ("found", "enrolled"):
                if label.status == "held_out":
                    skipped.add("held out", label.label_id)
                continue
            if not label.crop_path or not label.pattern:
                skipped.add("no crop or pattern recorded", label.label_id)
                continue
            root = Path(sources.get(label.batch_id) or Path(path).parent / label.batch_id)
            items.append(EnrollItem(label.label_id, label.pattern, root / label.crop_path, label.sha256))
    return items, skipped


def _batch_sources(path: Path, sqlite3) -> dict[str, str]:
    """Batch id -> the batch folder its crops are in (the registry's batches.source)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        return {row[0]: row[1] for row in db.execute("SELECT batch_id, source FROM batches")}
    finally:
        db.close()


def items_from_folder(root: Path, capture: str | None = None) -> tuple[list[EnrollItem], Skipped]:
    """labels.csv (label_id, pattern) and crops/LABEL_ID.png or crops/LABEL_ID/*.png (the
    capture named `capture`, else the first by name)."""
    root = Path(root)
    table = root / "labels.csv"
    if not table.exists():
        raise PufError(f"{root} has no labels.csv (label_id,pattern); give a registry.sqlite or a crop folder")
    skipped = Skipped()
    items = []
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"label_id", "pattern"} <= set(reader.fieldnames or ()):
            raise PufError(f"{table} needs the columns label_id and pattern")
        for row in reader:
            try:  # before it names a file: no "../" leads out of the folder
                label_id = check_id("label", row["label_id"])
            except PufError as error:
                raise PufError(f"{table} line {reader.line_num}: {error}; nothing enrolled") from None
            single = root / "crops" / f"{label_id}.png"
            folder = root / "crops" / label_id
            if capture is not None:
                path = folder / f"{capture}.png"
            elif single.exists():
                path = single
            else:
                found = sorted(folder.glob("*.png")) if folder.is_dir() else []
                path = found[0] if found else single
            if not path.exists():
                skipped.add("crop missing", label_id)
                continue
            items.append(EnrollItem(label_id, row["pattern"], path))
    return items, skipped


def load_items(labels: Path, batches: tuple[str, ...] = (), capture: str | None = None
               ) -> tuple[list[EnrollItem], Skipped]:
    labels = Path(labels)
    if labels.is_file():
        return items_from_registry(labels, batches)
    if labels.is_dir():
        return items_from_folder(labels, capture)
    raise PufError(f"no registry or crop folder at {labels}")


# ---- crops to fingerprints -------------------------------------------------------------

def read_crop(item: EnrollItem) -> np.ndarray | str:
    """The crop's pixels, or why it cannot be used (one bad crop is skipped, never the
    end of the whole enrollment)."""
    try:
        data = item.crop.read_bytes()
    except OSError:
        return "crop missing"
    if item.sha256 and hashlib.sha256(data).hexdigest() != item.sha256:
        return "crop changed since it was recorded"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        image = None
    if image is None or image.shape[0] != image.shape[1]:
        return "crop unreadable or not square"
    if image.shape[0] < MIN_CROP_PX:
        return f"crop smaller than {MIN_CROP_PX}x{MIN_CROP_PX} px"
    return image


def variants(crop: np.ndarray, options: EnrollOptions, rng: np.random.Generator) -> list[np.ndarray]:
    """The copies of one crop that get enrolled."""
    if options.augmented:
        paper = dataclasses.replace(NONE, rotation_deg=180.0, v_shift_p=1.0)  # the paper's recipe
        return [crop] + [augment(crop, paper, rng) for _ in range(options.augmented - 1)]
    out = []
    side = crop.shape[0]
    for k in range(options.rotations):
        angle = 360.0 * k / options.rotations
        if angle % 90 == 0:
            out.append(np.ascontiguousarray(np.rot90(crop, int(angle // 90))))
        else:
            turn = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
            out.append(cv2.warpAffine(crop, turn, (side, side), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT_101))
    return out


def embed_items(runner, items: list[EnrollItem], options: EnrollOptions, skipped: Skipped, dim: int,
                progress: bool = True, thumbnail_px: int = 0) -> tuple[list[EnrollItem], np.ndarray, np.ndarray]:
    """Fingerprints of every usable item: the items kept, (kept * copies, d) vectors, and
    (kept, px, px) thumbnails of the crops as enrolled (none when `thumbnail_px` is 0)."""
    rng = np.random.default_rng(options.seed)
    kept: list[EnrollItem] = []
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    thumbnails: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            chunks.append(runner.run(preprocess_batch(pending, runner.preprocess)).embedding)
            pending.clear()

    for item in tqdm(items, desc="embedding", unit="label", disable=not progress):
        crop = read_crop(item)
        if isinstance(crop, str):  # why it cannot be used
            skipped.add(crop, item.label_id)
            continue
        kept.append(item)
        if thumbnail_px:
            thumbnails.append(make_thumbnail(crop, thumbnail_px))
        pending.extend(variants(crop, options, rng))
        if len(pending) >= options.batch_size:
            flush()
    flush()
    return (kept, np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32),
            np.stack(thumbnails) if thumbnails else np.zeros((0, thumbnail_px, thumbnail_px), np.uint8))


# ---- shards ----------------------------------------------------------------------------

def enrolled_label_ids(bundle: Path, manifest: Manifest) -> set[str]:
    ids: set[str] = set()
    for entry in (manifest.shards.entries if manifest.shards else {}).values():
        ids.update(np.char.decode(np.load(Path(bundle) / entry.ids, allow_pickle=False), "ascii").tolist())
    return ids


def bundle_templates(bundle: Path, manifest: Manifest, layout=None):
    """Glyph templates of every class of the bundle's pattern set, at the proportions of
    the labels being enrolled (`layout`; the default layout's when there is none)."""
    sizes = layout or BatchLayout  # the class's attributes are the default layout's sizes
    return pattern_templates(bundle_pattern_set(bundle, manifest), sizes.glyph_size_um, sizes.label_size_um)


def check_pattern_sets(labels: Path, items: list[EnrollItem], model_set) -> object | None:
    """Refuse labels whose glyphs the bundle's model does not know (another pattern set);
    returns the layout of the first batch enrolled (for its proportions), when known."""
    labels = Path(labels)
    if labels.is_dir():
        check_model_knows(model_set, folder_pattern_set(labels), f"the crop folder {labels}")
        return None
    first = None
    with Registry(labels) as registry:  # a registry's label ids are its layouts' (BATCH-FFFF-SS)
        for batch_id in sorted({parse_label_id(item.label_id)[0] for item in items}):
            layout = registry.batch_layout(batch_id)
            batch_set = batch_pattern_set(layout) if layout is not None else None
            if batch_set is not None:
                check_model_knows(model_set, batch_set, f"batch {batch_id}")
                first = first or layout
    return first


def index_budget_per_vector(manifest: Manifest, memory_budget_mb: float, capacity: int, id_bytes: int) -> float:
    """Index bytes one vector may take: the memory budget less the model files (not the
    shards), shared by `capacity` vectors, less each vector's label id."""
    return (memory_budget_mb * 1e6 - _model_bytes(manifest)) / capacity - id_bytes


def memory_mb_for(manifest: Manifest, bytes_per_vector: float, capacity: int, id_bytes: int) -> float:
    """The memory budget that gives each vector `bytes_per_vector` of index (the inverse of
    `index_budget_per_vector`)."""
    return ((bytes_per_vector + id_bytes) * capacity + _model_bytes(manifest)) / 1e6


def _model_bytes(manifest: Manifest) -> int:
    return sum(v.bytes or 0 for k, v in manifest.file_entries.items() if not k.startswith("shards/"))


def update_shard(old_index, old_ids: np.ndarray, new: np.ndarray, new_ids: list[str],
                 budget_per_vector: float, options: EnrollOptions, genuine_cosine: float):
    """The shard's index after adding `new`, its id map, and its manifest entry (`old_index`
    as `edge_app.shards.open_index` gives it, read whole)."""
    d = new.shape[1]
    total = (old_index.ntotal if old_index is not None else 0) + len(new)
    plan = index_build.plan_index(total, d, budget_per_vector, options.exact_max)
    old_vectors = stored_vectors(old_index) if old_index is not None and old_index.ntotal \
        else np.zeros((0, d), np.float32)
    reference = np.concatenate([old_vectors, new]).astype(np.float32)
    reuse = old_index is not None and index_build.index_kind(old_index) == plan.kind
    if reuse and plan.nlist:
        import faiss

        reuse = faiss.extract_index_ivf(faiss_index(old_index)).nlist * 4 > plan.nlist
    if reuse:
        index = index_build.add_vectors(old_index, new)
        action = "appended"
    else:
        index = index_build.build_index(reference, plan, options.seed)
        action = "built" if old_index is None or not old_index.ntotal else "rebuilt"
    width = max([len(s) for s in new_ids] + [old_ids.dtype.itemsize if len(old_ids) else 1])
    ids = np.concatenate([old_ids.astype(f"S{width}"), np.array(new_ids, dtype=f"S{width}")])
    tuned = index_build.tune(index, reference, options.target_recall, genuine_cosine, seed=options.seed, labels=ids)
    set_search_params(index, tuned["search"])
    entry = {"vectors": int(index.ntotal), "labels": int(len(np.unique(ids))), "kind": index_build.index_kind(index),
             "factory": plan.factory if not reuse else None, "action": action, **tuned}
    return index, ids, entry


def new_section(manifest: Manifest, fmt: str) -> Shards:
    """The shards section of a bundle that holds no labels yet."""
    return Shards(format=SHARDS_FORMAT, metric="inner_product", embedding_dim=int(manifest.embedding_dim or 0),
                  model_format=fmt, classes={}, enrollments=[])


def ensure_templates(update: BundleUpdate, bundle: Path, manifest: Manifest, templates: Path | None,
                     layout=None) -> None:
    """Ship glyph templates in the new version when the bundle has none: `templates` (.npz),
    else rendered from the bundle's pattern set at `layout`'s proportions."""
    if TEMPLATES in update.manifest.file_entries:
        return
    if templates is not None:
        rendered = PatternTemplates.load(templates)
    else:
        rendered = bundle_templates(bundle, manifest, layout)
    rendered.save(update.path_for(TEMPLATES))


def shard_budget(manifest: Manifest, options: EnrollOptions, total: int, label_ids: list[str]) -> float:
    """Index bytes a vector may take once the bundle holds `total` vectors (or the planned capacity)."""
    return index_budget_per_vector(manifest, options.memory_budget_mb, *_shared_by(options, total, label_ids))


def _shared_by(options: EnrollOptions, total: int, label_ids: list[str]) -> tuple[int, int]:
    """The vectors the memory budget is shared by, and the bytes of each one's label id."""
    return max(options.capacity, total, 1), max([len(i) for i in label_ids] + [16])


def check_score_errors(manifest: Manifest, options: EnrollOptions, shards: dict[str, dict], total: int,
                       label_ids: list[str]) -> dict[str, dict]:
    """The shards written (pattern -> entry) whose scores rise above exact ones by more than
    MAX_SCORE_RISE. Refused (a PufError naming them and the ways out) unless
    `options.accept_approximate_scores`; accepted, the manifest's decision is marked not
    calibrated: its threshold was set on other scores."""
    rising = {p: e for p, e in shards.items() if e["score_error"]["max_up"] > MAX_SCORE_RISE}
    if not rising:
        return rising
    dim = int(manifest.embedding_dim or 0)
    needed = max(index_build.sq8_bytes_per_vector(e["vectors"], dim, options.exact_max) for e in shards.values())
    memory_mb = math.ceil(memory_mb_for(manifest, needed, *_shared_by(options, total, label_ids)))
    pattern, entry = max(rising.items(), key=lambda item: item[1]["score_error"]["max_up"])
    what = (f"shard {pattern!r} ({entry['kind']} index) raises scores above exact search by up to "
            f"{entry['score_error']['max_up']:.4f}" + (f" ({len(rising)} shards in all)" if len(rising) > 1 else "")
            + f", more than {MAX_SCORE_RISE:g}")
    if not options.accept_approximate_scores:
        raise PufError(f"{what}: the threshold, calibrated on exact scores, would accept counterfeits rounded up "
                       f"past it; nothing written, the bundle is as it was. Either raise --memory-mb to "
                       f"{memory_mb} (8-bit codes, within {MAX_SCORE_RISE:g}), or pass --accept-approximate-scores "
                       "and then calibrate the threshold on this index with puf evaluate --query-far")
    decision = mark_not_calibrated(manifest, f"{what}, written with --accept-approximate-scores: calibrate the "
                                             "threshold on this index with puf evaluate --query-far")
    decision.extra["approximate_scores"] = {p: e["score_error"] for p, e in rising.items()}
    return rising


def check_calibrated_size(manifest: Manifest, shards: dict[str, dict]) -> str | None:
    """Mark the threshold not calibrated when a shard written (pattern -> entry) holds more
    labels, or more enrolled vectors (a label's copies), than the threshold was calibrated for
    (`Decision.labels_per_shard`, `vectors_per_shard`) and than any other size it was checked
    at (`Decision.checked_sizes`): a counterfeit is compared with every vector of its shard, so
    the more there are, the likelier one clears the threshold. Returns why, or None when the
    threshold still holds."""
    decision = manifest.decision
    if decision is None or not decision.calibrated:
        return None
    checked = [(size["labels"], size["vectors"]) for size in decision.checked_sizes or []]
    outside = {p: e for p, e in shards.items()
               if not any(e["labels"] <= labels and e["vectors"] <= vectors for labels, vectors in checked)}
    for count, limit in (("labels", decision.labels_per_shard), ("vectors", decision.vectors_per_shard)):
        over = {p: e[count] for p, e in outside.items() if limit and e[count] > limit}
        if over:
            pattern, held = max(over.items(), key=lambda item: item[1])
            also = "; ".join(f"{labels:,} labels and {vectors:,} vectors" for labels, vectors in checked)
            why = (f"shard {pattern!r} holds {held:,} {count}"
                   + (f" ({len(over)} shards in all)" if len(over) > 1 else "")
                   + f", more than the {limit:,} a shard the threshold {decision.threshold} was calibrated for"
                   + (f" (and more than it was checked at: {also} a shard)" if checked else "")
                   + ": a counterfeit meets more of them there, so it is accepted more often; calibrate the threshold "
                     "on this bundle with puf evaluate --query-far")
            mark_not_calibrated(manifest, why)
            return why
    return None


def mark_not_calibrated(manifest: Manifest, why: str) -> Decision:
    """Record in the manifest's decision that its threshold no longer holds, and why (the
    device shows that reason as its uncalibrated warning); the decision."""
    decision = manifest.decision or Decision()
    decision.calibrated = False
    decision.extra["not_calibrated_because"] = why
    manifest.decision = decision
    return decision


def genuine_cosine_of(options: EnrollOptions, manifest: Manifest) -> float:
    """The cosine of the genuine-like queries shards are tuned on: the option, else the
    bundle's threshold (0.3-0.9)."""
    threshold = manifest.threshold
    return options.genuine_cosine or float(np.clip(threshold if threshold else DEFAULT_GENUINE_COSINE, 0.3, 0.9))


def write_shard(update: BundleUpdate, bundle: Path, class_index: int, old: ShardEntry | None, new: np.ndarray,
                new_ids: list[str], budget_per_vector: float, options: EnrollOptions,
                genuine_cosine: float) -> dict:
    """Write the shard of pattern class `class_index` into the new version: its `old` shard
    (None: none) with `new` added; returns its manifest entry (as the report shows it)."""
    old_index = open_index(bundle, old, mmap=False) if old else None
    old_ids = np.load(bundle / old.ids, allow_pickle=False) if old else np.zeros(0, "S1")
    index, ids, entry = update_shard(old_index, old_ids, new, new_ids, budget_per_vector, options, genuine_cosine)
    return {**save_shard(index, ids, class_index, update.path_for), **entry}


def save_shard(index, ids: np.ndarray, class_index: int, path_for) -> dict:
    """Write a shard's files (`path_for`: bundle-relative name -> where to write it, called
    once a file); the entry's file names and bytes."""
    index_name, ids_name = shard_paths(class_index)
    paths = {index_name: path_for(index_name), ids_name: path_for(ids_name)}
    index_build.write_index(faiss_index(index), paths[index_name])
    np.save(paths[ids_name], ids, allow_pickle=False)
    names: dict = {"index": index_name, "ids": ids_name}
    if isinstance(index, Reranked):
        rows_name = rows_path(class_index)
        paths[rows_name] = path_for(rows_name)
        np.save(paths[rows_name], index.codes(), allow_pickle=False)
        names["rows"] = ShardRows.of(rows_name, index.vmin, index.vdiff, index.candidates).to_dict()
    return {**names, "bytes": sum(Path(path).stat().st_size for path in paths.values())}


def close_section(section: Shards, classes: list[str], options: EnrollOptions) -> None:
    """Order the section's shards by class and total them."""
    entries = section.entries
    section.classes = {p: entries[p] for p in classes if p in entries}
    section.format = section.format_needed()
    section.vectors = sum(e.vectors or 0 for e in section.entries.values())
    section.labels = sum(e.labels or 0 for e in section.entries.values())
    section.memory_budget_mb = options.memory_budget_mb


def thumbnail_size(manifest: Manifest, asked: int) -> int:
    """The thumbnail size to enroll with: the bundle's once it has thumbnails (a bundle has
    them for every label or for none), else `asked` (0: none)."""
    section = manifest.shards or Shards()
    have = int((section.thumbnails or {}).get("px", 0))
    if have and asked and asked != have:
        raise PufError(f"the bundle's thumbnails are {have} px: enroll with --thumbnails {have}, or without it")
    if asked and not have and section.labels:
        raise PufError(f"the bundle's {section.labels} labels were enrolled without thumbnails, and a bundle has "
                       "them for every label or none: enroll into a fresh bundle (from puf export) with --thumbnails")
    return have or asked


def write_thumbnails(update, class_index: int, new: np.ndarray, old: Path | None) -> str:
    """A shard's thumbnails file in the new version: the old rows, then `new`."""
    name = thumbnail_path(class_index)
    previous = np.load(old, mmap_mode="r", allow_pickle=False) if old else new[:0]
    out = np.lib.format.open_memmap(update.path_for(name), mode="w+", dtype=np.uint8,
                                    shape=(len(previous) + len(new), *new.shape[1:]))
    out[:len(previous)] = previous
    out[len(previous):] = new
    out.flush()
    del out
    return name


def bundle_name(bundle: Path) -> str:
    """The bundle as the registry names it (`fabrication.registry.Registry.record_enrolled`): its
    resolved path, so a symlink to it or a relative path is the same bundle."""
    return str(home_of(Path(bundle)))


def record_enrolled(bundle: Path, labels: Path, label_ids: list[str], removed: bool = False) -> None:
    """Record in the registry `labels` that the bundle holds these labels, or (`removed`) no
    longer holds them (nothing for a crop folder). Called again for the labels a re-run finds
    already in the bundle (or already gone), so a run cut off between the bundle's new version
    and this record converges; a registry that cannot be written (a full disk) is a PufError
    saying so."""
    if not label_ids or not Path(labels).is_file():
        return
    try:
        with Registry(labels) as registry:
            if removed:
                registry.record_removed(bundle_name(bundle), label_ids)
            else:
                registry.record_enrolled(bundle_name(bundle), label_ids)
    except (sqlite3.Error, PufError) as error:
        holds, record, verb = ("no longer holds", "removed", "unenroll") if removed else ("holds", "enrolled", "enroll")
        raise PufError(f"the bundle {bundle} {holds} {len(label_ids)} label(s) that the registry {labels} could not "
                       f"record as {record} ({error}); once it can be written (a full disk: make room), run puf "
                       f"{verb} again: it records them without doing anything twice") from None


def store_fingerprints(target: StoreTarget, runner, manifest: Manifest, fmt: str, items: list[EnrollItem],
                       enrolled: set[str], kept: list[EnrollItem], vectors: np.ndarray, options: EnrollOptions,
                       progress: bool) -> dict:
    """Upsert the fingerprints of `kept` (`vectors`) into the store, and those of the labels
    the bundle already held (`enrolled`) that the store lacks (enrolled before without it, or a
    run cut off before its write): embedded again, so the store converges on the bundle."""
    dim = int(manifest.embedding_dim or 0)
    name = collection_name(manifest, fmt)
    with FingerprintStore(target.uri) as store:
        store.open_collection(name, dim, create=True)
        held = [item for item in items if item.label_id in enrolled]
        have = store.label_ids(name, target.region, [item.label_id for item in held])
        skipped = Skipped()
        missing, more, _ = embed_items(runner, [i for i in held if i.label_id not in have], options, skipped, dim,
                                       progress)
        labels = kept + missing
        rows = store.upsert(name, target.region, [i.label_id for i in labels], [i.pattern for i in labels],
                            np.concatenate([vectors, more]), options.copies)
    return {"uri": store.uri, "collection": name, "region": str(target.region), "labels": len(labels),
            "rows": rows, "caught_up": len(missing), "skipped": dict(skipped.reasons)}


@dataclass(kw_only=True)
class EnrollReport:
    """What an enrollment did; `to_dict()` is `puf enroll --json`'s report, `describe()` its text."""

    bundle: str
    labels_added: int
    vectors_added: int
    skipped: dict[str, int]  # reason -> labels skipped for it
    skipped_examples: dict[str, str]  # reason -> one label skipped for it
    shards: dict[str, dict] = field(default_factory=dict)  # pattern -> its shard's manifest entry, as written
    # pattern -> the score error of each shard written with --accept-approximate-scores
    approximate_scores: dict[str, dict] = field(default_factory=dict)
    # why the threshold no longer holds for the shards' size (`check_calibrated_size`), or None
    oversized_shards: str | None = None
    store: dict | None = None  # `store_fingerprints`' report, when enrolled into a fingerprint store
    labels_total: int = 0
    vectors_total: int = 0
    thumbnails_px: int = 0
    bundle_bytes: int = 0
    signed_by: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.store is None:
            del data["store"]
        return data

    def describe(self) -> str:
        """The report as a table for people."""
        signer = self.signed_by or "NOBODY (no --key: devices will refuse it)"
        lines = [f"bundle {self.bundle}: +{self.labels_added} labels (+{self.vectors_added} vectors), "
                 f"{self.labels_total} labels in all, {self.bundle_bytes / 1e6:.1f} MB, "
                 + (f"thumbnails {self.thumbnails_px} px, " if self.thumbnails_px else "")
                 + f"{self.seconds} s; signed by {signer}"]
        if self.shards:
            lines.append(f"{'pattern':<12}{'labels':>8}{'vectors':>9}  {'index':<10}{'nprobe':>7}"
                         f"{'recall@1':>10}{'random':>8}{'score+':>8}  action")
            for pattern, e in self.shards.items():
                recall = e["recall_at_1"]
                lines.append(f"{pattern:<12}{e['labels']:>8}{e['vectors']:>9}  {e['kind']:<10}"
                             f"{e['search'].get('nprobe', '-'):>7}{recall['genuine_like']:>10.4f}"
                             f"{recall['random']:>8.3f}{e['score_error']['max_up']:>8.4f}  {e['action']}")
        short = [p for p, e in self.shards.items() if not e["recall_at_1"]["meets_target"]]
        if short:
            lines.append(f"WARNING: {len(short)} shard(s) miss the recall target even searching every cell "
                         f"(e.g. {short[0]}): their codes are too coarse; raise --memory-mb")
        if self.approximate_scores:
            lines.append(f"NOT CALIBRATED: {len(self.approximate_scores)} shard(s) raise scores by more than "
                         f"{MAX_SCORE_RISE:g} (score+): calibrate the threshold on them with puf evaluate --query-far")
        if self.oversized_shards:
            lines.append(f"NOT CALIBRATED: {self.oversized_shards}")
        for reason, count in self.skipped.items():
            lines.append(f"skipped {count}: {reason} (e.g. {self.skipped_examples[reason]})")
        return "\n".join(lines)


def enroll(bundle: Path, labels: Path, private_key: SigningKey | None = None, options: EnrollOptions = EnrollOptions(),
           batches: tuple[str, ...] = (), capture: str | None = None, templates: Path | None = None,
           progress: bool = True, trusted_keys: Path | None = None, store: StoreTarget | None = None
           ) -> EnrollReport:
    """Enroll the labels into the bundle (a new version, signed with `private_key` if given,
    and only when its manifest was signed by that key or one of `trusted_keys`: see
    `trainer.keys.check_before_signing`), and into the fingerprint `store` when given (before
    the bundle's new version, `store_fingerprints`); returns a report. One enrollment at a time into a
    bundle (`trainer.bundle_write.bundle_lock`), held until the registry records the labels
    enrolled: two at once would both build on the same version and the second would drop
    the first one's labels while the registry called them enrolled."""
    with bundle_lock(bundle):
        return _enroll(Path(bundle), labels, private_key, options, batches, capture, templates, progress,
                       trusted_keys, store)


def _enroll(bundle: Path, labels: Path, private_key: SigningKey | None, options: EnrollOptions,
            batches: tuple[str, ...], capture: str | None, templates: Path | None, progress: bool,
            trusted_keys: Path | None, store: StoreTarget | None) -> EnrollReport:
    """`enroll`, with the bundle locked."""
    started = time.perf_counter()
    opened = read_for_update(bundle, private_key, trusted_keys)  # refused before the work, not after it
    manifest = opened.manifest
    classes = list(manifest.pattern_classes or [])
    dim = int(manifest.embedding_dim or 0)
    items, skipped = load_items(labels, batches, capture)
    if not items and not skipped.reasons:
        raise PufError(f"{labels} holds no labels to enroll" + (f" of batch {', '.join(batches)}" if batches else ""))
    layout = check_pattern_sets(labels, items, bundle_pattern_set(bundle, manifest))
    enrolled = enrolled_label_ids(bundle, manifest)
    record_enrolled(bundle, labels, [item.label_id for item in items if item.label_id in enrolled])
    revoked = Revoked.load(bundle, manifest).listing.label_ids  # never enrolled again
    todo = []
    for item in items:
        if item.label_id in enrolled:
            skipped.add("already enrolled", item.label_id)
        elif item.label_id in revoked:
            skipped.add("revoked", item.label_id)
        elif item.pattern not in classes:
            skipped.add("pattern not a class of the model", item.label_id)
        else:
            todo.append(item)
    thumbnail_px = thumbnail_size(manifest, options.thumbnails)
    fmt = options.model_format or manifest.model_format
    runner = ModelRunner.of_manifest(bundle, manifest, fmt)
    kept, vectors, thumbnails = embed_items(runner, todo, options, skipped, dim, progress,
                                            thumbnail_px)
    unusable = {reason: n for reason, n in skipped.reasons.items()
                if reason not in ("already enrolled", "held out", "revoked")}
    if not kept and unusable:
        raise PufError("no label enrolled, the bundle is unchanged: " + "; ".join(
            f"{n} {reason} (e.g. {skipped.examples[reason]})" for reason, n in unusable.items()))
    copies = options.copies
    report = EnrollReport(bundle=str(bundle), labels_added=len(kept), vectors_added=int(len(vectors)),
                          skipped=dict(skipped.reasons), skipped_examples=skipped.examples)
    if store is not None:  # before the bundle's new version: a re-run rewrites the same rows (upsert)
        report.store = store_fingerprints(store, runner, manifest, fmt, items, enrolled, kept, vectors, options,
                                             progress)
    with BundleUpdate(opened) as update:
        section = update.manifest.shards or new_section(manifest, fmt)
        if thumbnail_px:
            section.thumbnails = {"px": thumbnail_px, "channel": THUMBNAIL_CHANNEL}
        if (section.model_format or fmt) != fmt:
            raise PufError(f"the bundle's labels were enrolled with its {section.model_format} model; "
                           f"enroll with the same (--model-format {section.model_format})")
        classes_now = section.entries
        ensure_templates(update, bundle, manifest, templates, layout)
        by_pattern: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(kept):
            by_pattern[item.pattern].append(i)
        total = sum(e.vectors or 0 for e in classes_now.values()) + len(vectors)
        kept_ids = [i.label_id for i in kept]
        budget_per_vector = shard_budget(update.manifest, options, total, kept_ids)
        genuine_cosine = genuine_cosine_of(options, update.manifest)
        for pattern in sorted(by_pattern, key=classes.index):
            rows = by_pattern[pattern]
            new = vectors[np.repeat(np.array(rows) * copies, copies) + np.tile(np.arange(copies), len(rows))]
            new_ids = [kept[r].label_id for r in rows for _ in range(copies)]
            old = classes_now.get(pattern)
            entry = write_shard(update, bundle, classes.index(pattern), old, new, new_ids, budget_per_vector, options,
                                genuine_cosine)
            if thumbnail_px:
                entry["thumbnails"] = write_thumbnails(update, classes.index(pattern), thumbnails[rows],
                                                       bundle / old.thumbnails if old and old.thumbnails else None)
            classes_now[pattern] = ShardEntry.from_dict(pattern, entry, MANIFEST)
            report.shards[pattern] = entry
        report.approximate_scores = {p: e["score_error"] for p, e in check_score_errors(
            update.manifest, options, report.shards, total, kept_ids).items()}
        report.oversized_shards = check_calibrated_size(update.manifest, report.shards)
        section.classes = classes_now
        close_section(section, classes, options)
        if kept:
            section.enrollments = [*(section.enrollments or []), {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": str(labels), "labels": len(kept),
                "vectors": int(len(vectors)), "rotations": options.rotations, "augmented": options.augmented,
                "batches": sorted({i.label_id.rsplit("-", 2)[0] for i in kept})}]
        update.manifest.shards = section
        manifest = update.commit(private_key, options.valid_days, trusted_keys=trusted_keys)
    record_enrolled(bundle, labels, [item.label_id for item in kept])
    bytes_total = sum(v.bytes or 0 for v in manifest.file_entries.values())
    report.labels_total, report.vectors_total = section.labels or 0, section.vectors or 0
    report.thumbnails_px, report.bundle_bytes, report.signed_by = thumbnail_px, bytes_total, manifest.signer
    report.seconds = round(time.perf_counter() - started, 2)
    return report

