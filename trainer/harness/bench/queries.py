"""The queries: new handheld photos, cached as the JPEGs a device receives, and their verdicts.

* ``genuine``: new photos (`fabrication.sim.field_camera`: another camera, any rotation,
  tilt, white balance, motion blur, JPEG) of enrolled labels, several per label when
  there are more queries than labels, each with its own seed;
* ``counterfeit``: one photo of each label of batches never enrolled (other film seeds);
* ``clone``: enrolled labels photographed, printed and re-photographed
  (`fabrication.sim.clone`).

Every photo goes through the device's own pipeline (`edge_app.verify.Verifier.verify_image`:
segment, one model run, shard search, decide), with and without pattern classification.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np
from tqdm import tqdm

from edge_app.atomic_write import write_atomic
from edge_app.errors import PufError
from edge_app.layout import parse_label_id
from edge_app.verify import find_labels, glyph_reading
from fabrication.sim.clone import clone_label, photograph_clone
from fabrication.sim.field_camera import capture_label
from trainer.harness.bench.database import key, pool_map
from trainer.harness.bench.plan import BenchPlan, counterfeit_batches, enrolled_batches
from trainer.harness.demo_queries import target_verdict, true_centre_and_side
from trainer.simdata import SimSpec, make_film, make_layout

KINDS = ("genuine", "counterfeit", "clone")
# in the photos' cache key: photos of another camera recipe are taken again
PHOTO_RECIPES = {True: "label window (capture_label window=True), JPEG blocks of the whole photo",
                 False: "whole photo"}
PHOTOS_PER_JOB = 400
PHOTO_SEED = 50_000  # handheld photo seeds start here (the microscope uses others)


@dataclass(frozen=True)
class Photo:
    kind: str
    n: int  # number within its kind
    label_id: str  # the label photographed (or copied)
    pattern: str
    path: str
    corners_px: list  # the label's true corners in the photo


def _photo_jobs(plan: BenchPlan, enrolled_ids: list[str], taken) -> list[tuple[dict, list[tuple]]]:
    """(batch spec, [(kind, n, field, slot, seed)]) in chunks: which photos to take of which film.
    Genuine photos and clones are of enrolled labels (`enrolled_ids`, cycled with a new seed
    each round); counterfeits of every label of the never-enrolled batches in turn. Photos
    for which `taken(kind, n)` holds are left out."""
    specs = {s.batch_id: s for s, _ in enrolled_batches(plan)}
    wanted: dict[str, list] = {}

    def add(label_id: str, item: tuple) -> None:
        if taken(item[0], item[1]):
            return
        batch, field, slot = parse_label_id(label_id)
        wanted.setdefault(batch, []).append((item[0], item[1], field, slot, item[2]))

    count = len(enrolled_ids)
    for n in range(plan.genuine):
        add(enrolled_ids[n % count], ("genuine", n, PHOTO_SEED + n // count))
    for n in range(plan.clones):
        add(enrolled_ids[n % count], ("clone", n, PHOTO_SEED + 900 + n // count))
    others = counterfeit_batches(plan)
    specs.update({s.batch_id: s for s, _ in others})
    n = 0
    for spec, numbers in others:
        for label in numbers:
            field, slot = divmod(label, 12)
            if not taken("counterfeit", n):
                wanted.setdefault(spec.batch_id, []).append(("counterfeit", n, field, slot, PHOTO_SEED))
            n += 1
    jobs = []
    for batch, items in wanted.items():
        for i in range(0, len(items), PHOTOS_PER_JOB):
            jobs.append((asdict(specs[batch]), items[i:i + PHOTOS_PER_JOB]))
    return jobs


def _photograph(job: tuple[dict, list[tuple], str, bool]) -> list[dict]:
    """Worker: take a chunk of photos of one film (each only its label's window when `window`:
    `fabrication.sim.field_camera.capture_label`), write them as JPEGs, return their records.
    Each photo's record is written whole after its JPEG: a killed run takes again only the
    photos without one."""
    spec_dict, items, folder, window = job
    spec = SimSpec(**spec_dict)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    records = []
    for kind, n, field, slot, seed in items:
        if kind == "clone":
            printed, _ = clone_label(film, layout, field, slot, seed)
            image, truth = photograph_clone(printed, layout, field, slot, seed + 7, window=window)
        else:
            image, truth = capture_label(film, layout, field, slot, seed, window=window)
        path = Path(folder) / kind / f"{n:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_atomic(path, data.tobytes())
        record = asdict(Photo(kind, n, truth["label_id"], truth["pattern"], str(path), truth["corners_px"]))
        write_atomic(path.with_suffix(".json"), json.dumps(record))  # written last: the photo is complete
        records.append(record)
    return records


def take_photos(plan: BenchPlan, enrolled_ids: list[str], cache: Path) -> dict[str, list[Photo]]:
    """Every query photo, taken once and cached beside its record (a re-run, or a larger run,
    reuses what is there)."""
    window = not plan.whole_photos
    recipe = () if plan.whole_photos else (PHOTO_RECIPES[window],)  # whole photos keep their old caches
    folder = Path(cache) / f"photos-{key(enrolled_ids[:3], len(enrolled_ids), plan.patterns, *recipe)}"

    def record(kind: str, n: int) -> Path:
        return folder / kind / f"{n:05d}.json"

    jobs = _photo_jobs(plan, enrolled_ids, lambda kind, n: record(kind, n).exists())
    if jobs:
        photos = sum(len(items) for _, items in jobs)
        pool_map(_photograph, [(spec, items, str(folder), window) for spec, items in jobs], plan.workers,
                 f"handheld camera: {photos:,} photos ({PHOTO_RECIPES[window]})", "job")
    counts = {"genuine": plan.genuine, "counterfeit": plan.counterfeit, "clone": plan.clones}
    return {kind: [Photo(**json.loads(record(kind, n).read_text())) for n in range(counts[kind])] for kind in KINDS}


@dataclass
class Outcome:
    """One photo's verdict on the photographed label."""

    kind: str
    label_id: str
    verdict: str  # genuine | counterfeit | unreadable
    matched: str | None
    score: float | None
    timings_ms: dict  # segment, model, search, total (the device's own)
    wall_ms: float  # verify_image on the whole photo

    @property
    def correct(self) -> bool:
        if self.kind == "genuine":
            return self.verdict == "genuine" and self.matched == self.label_id
        return self.verdict != "genuine"


def read_photo(photo: Photo) -> np.ndarray:
    image = cv2.imread(photo.path, cv2.IMREAD_COLOR)
    if image is None:
        raise PufError(f"cannot read the cached photo {photo.path}; delete the cache folder and run again")
    return image


def verify_photos(verifier, photos: list[Photo], desc: str) -> list[Outcome]:
    """Each photo through `verifier.verify_image`, as a device verifies it."""
    out = []
    for photo in tqdm(photos, desc=desc, unit="photo", smoothing=0.05):
        image = read_photo(photo)
        t0 = perf_counter()
        verdicts = verifier.verify_image(image, Path(photo.path).name)
        wall = (perf_counter() - t0) * 1000
        v = target_verdict(verdicts, photo.corners_px)
        out.append(Outcome(photo.kind, photo.label_id, v["verdict"], v["label_id"], v["score"], v["timings_ms"],
                           wall))
    return out


def device_crop(verifier, image: np.ndarray, corners_px: list) -> tuple[list[np.ndarray], str | None] | None:
    """The photographed label as the device cuts it: (crop turns to try, glyph pattern), or None."""
    result = find_labels(image, verifier.limits, verifier.bundle.templates)
    centre, side = true_centre_and_side(corners_px)
    best, distance = None, side / 3
    for label in result.labels:
        d = float(np.linalg.norm(label.corners.mean(axis=0) - centre))
        if d < distance:
            best, distance = label, d
    if best is None:
        return None
    turns = (0,) if best.orientation in ("glyph", "prior") else (0, 1, 2, 3)
    crops = [np.ascontiguousarray(np.rot90(best.crop, -t)) for t in turns]
    return crops, glyph_reading(best)


def best_lookup(verifier, crops: list[np.ndarray], glyph: str | None):
    """The device's lookup of a cut label: of the crop's turns, the one whose search scored best."""
    lookups, _, _ = verifier.lookup(crops, [glyph] * len(crops))
    return max(lookups, key=lambda lk: lk.match.score if lk.match is not None else -np.inf)


def top_candidates(verifier, crops: list[np.ndarray], glyph: str | None, k: int, per_label: int
                   ) -> list[tuple[str, float]]:
    """The fingerprint search's best `k` distinct labels (id, score) for a device crop, searched
    as the verifier searches (the predicted pattern's shards; the best of the crop's turns)."""
    best = best_lookup(verifier, crops, glyph)
    found: dict[str, float] = {}
    shards = verifier.bundle.shards.shards
    for pattern in best.searched:
        shard = shards.get(pattern)
        if shard is None or not len(shard):
            continue
        scores, rows = shard.search(best.embedding[None], k * per_label)
        for score, row in zip(scores[0], rows[0], strict=True):
            if row >= 0:
                label = shard.label_id(int(row))
                found[label] = max(found.get(label, -np.inf), float(score))
    return sorted(found.items(), key=lambda item: -item[1])[:k]
