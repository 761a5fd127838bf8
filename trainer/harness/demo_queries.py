"""The demo's field checks: handheld photos of four kinds, verified against the signed bundle.

* ``genuine``: new handheld captures (any rotation, tilt, blur, JPEG) of enrolled labels;
* ``held_out``: labels of the same batch and film that were segmented but never enrolled;
* ``other_film``: the batch's own laser job etched into another film: same ids, glyphs and
  borders, another grain (the best lookalike a second factory could make);
* ``clone``: enrolled labels photographed, printed and re-photographed
  (`fabrication.sim.clone`).

Every photo is written as the JPEG a device would receive and verified from those bytes
with the device's own pipeline (`edge_app.verify.Verifier`), so `puf verify` or `puf app`
on the same folder gives the same verdicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np
from tqdm import tqdm

from edge_app.bundle import load_bundle
from edge_app.verdicts import Reason
from edge_app.verify import Verifier
from fabrication.batch_dir import BatchDir
from fabrication.sim.clone import clone_label, photograph_clone
from fabrication.sim.field_camera import capture_label
from fabrication.sim.film import EtchedFilm
from trainer.images import read_bgr

KINDS = ("genuine", "held_out", "other_film", "clone")
EXPECTED = {"genuine": "genuine", "held_out": "counterfeit", "other_film": "counterfeit", "clone": "counterfeit"}


@dataclass
class Query:
    kind: str  # one of KINDS
    label_id: str  # the label photographed (or copied, or imitated)
    photo: str  # the JPEG verified
    corners_px: list  # where the label truly is in the photo (TL, TR, BR, BL)
    verdict: dict  # the target label's Verdict.to_dict()
    wall_ms: float  # verify_image on the whole photo

    @property
    def outcome(self) -> str:
        """accepted | rejected | unreadable."""
        return {"genuine": "accepted", "counterfeit": "rejected"}.get(self.verdict["verdict"], "unreadable")

    @property
    def correct(self) -> bool:
        """Genuine photos accepted as their own label; every other kind rejected."""
        if self.kind == "genuine":
            return self.outcome == "accepted" and self.verdict["label_id"] == self.label_id
        return self.outcome == "rejected"

    def to_dict(self) -> dict:
        return {**asdict(self), "outcome": self.outcome, "correct": self.correct}


@dataclass(frozen=True)
class Plan:
    genuine: list[tuple[int, int]]  # (field, slot) of each photo
    held_out: list[tuple[int, int]]
    other_film: list[tuple[int, int]]
    clone: list[tuple[int, int]]


def plan_queries(enrolled: list[tuple[int, int]], held_out: list[tuple[int, int]], photos: int,
                 seed: int) -> Plan:
    """`photos` genuine photos, as many of never-enrolled labels (half held out, half another
    film) and half as many clones, of the labels of the first genuine photos (so each clone
    has a genuine photo to compare with); distinct labels while the pools last."""
    rng = np.random.default_rng(seed)

    def pick(pool: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
        if not pool or n <= 0:
            return []
        rows = rng.choice(len(pool), n, replace=n > len(pool))
        return [pool[i] for i in rows]

    genuine = pick(enrolled, photos)
    never = photos - photos // 2 if held_out else photos
    return Plan(genuine, pick(held_out, photos // 2), pick(enrolled, never), genuine[:photos // 2])


def true_centre_and_side(corners_px: list) -> tuple[np.ndarray, float]:
    """Where the photographed label truly is, and its side in px (from its true corners)."""
    corners = np.asarray(corners_px, np.float64)
    return corners.mean(axis=0), float(np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1).mean())


def target_verdict(verdicts: list, corners_px: list) -> dict:
    """The verdict on the photographed label (a photo may show parts of its neighbours);
    an ``unreadable`` verdict when the label itself was not found."""
    centre, side = true_centre_and_side(corners_px)
    best, distance = None, side / 3
    for verdict in verdicts:
        if verdict.corners_px is None:
            continue
        d = float(np.linalg.norm(np.mean(verdict.corners_px, axis=0) - centre))
        if d < distance:
            best, distance = verdict, d
    if best is not None:
        return best.to_dict()
    first = verdicts[0].to_dict()
    if first["verdict"] != "unreadable":  # only neighbours were found
        first.update(verdict="unreadable", label_id=None, score=None, reason_code=str(Reason.NO_LABEL),
                     reason="the photographed label was not found (only its neighbours): retake the photo")
    return first


def run_queries(batch_dir: Path, bundle_dir: Path, trusted: Path, plan: Plan, out: Path, seed: int,
                progress: bool = True) -> list[Query]:
    """Photograph every planned query into `out` and verify it; one Query per photo."""
    batch = BatchDir(batch_dir)
    layout = batch.layout()
    genuine = EtchedFilm.load(batch.film_path)
    other = EtchedFilm(genuine.seed + 1, genuine.segments, genuine.style)  # the same laser job, another film
    verifier = Verifier(load_bundle(bundle_dir, trusted))
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(kind, field, slot) for kind in KINDS for field, slot in getattr(plan, kind)]
    queries = []
    for n, (kind, field, slot) in enumerate(tqdm(jobs, desc="handheld photos", unit="photo", disable=not progress)):
        shot = seed * 100_003 + n
        if kind == "clone":
            printed, _ = clone_label(genuine, layout, field, slot, shot)
            image, truth = photograph_clone(printed, layout, field, slot, shot + 7)
        else:
            image, truth = capture_label(other if kind == "other_film" else genuine, layout, field, slot, shot)
        path = out / f"{n:04d}_{kind}_{truth['label_id']}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        path.write_bytes(data.tobytes())
        photo = read_bgr(path)
        t0 = perf_counter()
        verdicts = verifier.verify_image(photo, path.name)
        wall_ms = (perf_counter() - t0) * 1000
        queries.append(Query(kind, truth["label_id"], str(path), truth["corners_px"],
                             target_verdict(verdicts, truth["corners_px"]), wall_ms))
    return queries
