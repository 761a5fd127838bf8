"""Render a label-crop data set from the simulated factory.

Each label gets several NEW captures, not augmented copies of one: re-shot microscope
fields (new stage error, defocus, exposure, noise, dust) and handheld photos (another
camera, any rotation, tilt, white balance, motion blur, JPEG). Each capture is cut into
a crop by warping the simulator's true label corners, jittered by about the error of
segmentation, onto the crop square in canonical orientation (the corners are given in
design orientation, which is what segmentation's glyph orientation recovers).

The folder it writes is the trainer's folder data set (see `trainer.data`)::

    ROOT/labels.csv              label_id,batch,pattern
    ROOT/crops/LABEL_ID/m0.png   microscope capture 0 (factory enrollment-like)
    ROOT/crops/LABEL_ID/h0.png   handheld capture 0 (device query-like)
    ROOT/simdata.json            what was rendered (reproducible from it)

Rendering resumes: labels whose crops exist are not rendered again.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_app.atomic_write import replacing
from edge_app.errors import PufError
from edge_app.label_crop import CROP_SIZE
from edge_app.layout import BatchLayout
from edge_app.pattern_set import PATTERN_SET_FILE
from edge_app.segment import segment
from fabrication.calibration import StageCalibration
from fabrication.pattern_import import load_pattern_set
from fabrication.patterns import layout_pattern_set, pattern_templates
from fabrication.sim.field_camera import capture_label
from fabrication.sim.film import EtchedFilm, FilmStyle
from fabrication.sim.label_render import crop_from_corners
from fabrication.sim.laser import engrave_layout
from fabrication.sim.microscope import SimulatedMicroscope

CALIBRATION_ORIGIN = (4000.0, -2500.0)


@dataclass(frozen=True)
class SimSpec:
    batch_id: str = "SIM0"
    film_seed: int = 1
    field_cols: int = 10
    field_rows: int = 10
    microscope_shots: int = 2  # captures of every field with the simulated microscope
    handheld_shots: int = 2  # handheld photos of every label
    crop_size: int = CROP_SIZE
    corner_jitter_px: float = 1.5  # std of the corner error, in capture pixels
    power_mw: float = 128.0
    seed: int = 0  # capture seed (new captures of the same film with another seed)
    # cut handheld photos with the device's own segmentation (edge_app.segment: border
    # search, glyph orientation) instead of the true corners; failures are counted
    segment_handheld: bool = False
    pattern_set: str = "builtin"  # the glyphs etched (`fabrication.pattern_import.load_pattern_set`)
    # how the film looks: a preset and/or NAME=VALUE settings (fabrication.sim.film.FilmStyle.parse)
    film_style: str = "default"

    def __post_init__(self) -> None:
        FilmStyle.parse(self.film_style)  # a bad style is refused here, not in a render worker

    @property
    def label_count(self) -> int:
        return self.field_cols * self.field_rows * 12


def make_layout(spec: SimSpec) -> BatchLayout:
    pattern_set = load_pattern_set(spec.pattern_set)
    names = pattern_set.names
    rng = np.random.default_rng([spec.film_seed, 0xBA7C])
    count = spec.field_cols * spec.field_rows * 12
    patterns = tuple(names[i] for i in rng.integers(0, len(names), count))
    return BatchLayout(spec.batch_id, patterns, field_cols=spec.field_cols,
                       field_rows=spec.field_rows, pattern_set=pattern_set)


def make_film(spec: SimSpec, layout: BatchLayout):
    film = EtchedFilm(spec.film_seed, style=FilmStyle.parse(spec.film_style))
    engrave_layout(film, layout, spec.power_mw)
    return film


def field_captures(spec: SimSpec, layout: BatchLayout, film, field: int
                   ) -> Iterator[tuple[str, str, np.ndarray | None]]:
    """(label_id, capture name, crop) for every capture of the labels of one field; crop None
    where the device's segmentation of a handheld photo failed (the name says how)."""
    calibration = StageCalibration(CALIBRATION_ORIGIN, 1.2)
    rng = np.random.default_rng([spec.seed, spec.film_seed, field, 0xC0])
    for shot in range(spec.microscope_shots):
        scope = SimulatedMicroscope(film, layout, calibration,
                                    seed=spec.seed * 1000 + shot)
        scope.move_to(*calibration.design_to_stage(*layout.field_center_um(field)))
        snap = scope.snap()
        assert snap.truth is not None  # a simulated microscope's snapshots carry it
        for label in snap.truth["labels"]:
            if label["whole"] and label["field"] == field:
                yield label["label_id"], f"m{shot}", crop_from_corners(
                    snap.image, label["corners_px"], spec.crop_size, spec.corner_jitter_px, rng)
    templates = device_templates(layout) if spec.segment_handheld else None
    for slot in range(layout.labels_per_field):
        for shot in range(spec.handheld_shots):
            image, truth = capture_label(film, layout, field, slot,
                                         seed=spec.seed * 1000 + shot)
            if templates is None:
                yield truth["label_id"], f"h{shot}", crop_from_corners(
                    image, truth["corners_px"], spec.crop_size, spec.corner_jitter_px, rng)
                continue
            crop, outcome = segment_handheld(image, truth, layout, templates, spec.crop_size)
            yield truth["label_id"], f"h{shot}" if crop is not None else f"x{shot}_{outcome}", crop


def device_templates(layout: BatchLayout):
    """The pattern templates the device reads glyphs with, at this layout's proportions."""
    return pattern_templates(layout_pattern_set(layout), layout.glyph_size_um, layout.label_size_um)


def segment_handheld(image: np.ndarray, truth: dict, layout: BatchLayout, templates,
                     crop_size: int) -> tuple[np.ndarray | None, str]:
    """The device's crop of a handheld photo, and what happened: "ok", "missed" (no
    label found), "turned" (the glyph chose the wrong quarter turn) or "moved" (the
    label found is not where the truth puts it)."""
    corners = np.asarray(truth["corners_px"], np.float64)
    side = float(np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1).mean())
    # the device knows its lens's scale only roughly: the label's size within 25%
    expected = 0.5 * (250 + 364)  # 200 um at 0.8 and 0.55 um/px
    result = segment(image, expected, k=1, crop_size=crop_size, size_tolerance=0.3,
                     border_frac=layout.border_width_um / layout.label_size_um,
                     rotation_deg=None, templates=templates)
    if not result.labels:
        return None, "missed"
    found = result.labels[0]
    error = np.linalg.norm(found.corners - corners, axis=1).max()
    if error > 0.1 * side:
        rolled = min(np.linalg.norm(np.roll(found.corners, q, axis=0) - corners, axis=1).max()
                     for q in range(1, 4))
        return None, "turned" if rolled < 0.1 * side else "moved"
    crop = found.crop if found.crop.ndim == 3 else cv2.cvtColor(found.crop, cv2.COLOR_GRAY2BGR)
    return crop, "ok"


def _render_fields(args: tuple[dict, str, list[int]]) -> int:
    spec_dict, root, fields = args
    spec = SimSpec(**spec_dict)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    crops = Path(root) / "crops"
    written = 0
    for field in fields:
        for label_id, name, crop in field_captures(spec, layout, film, field):
            folder = crops / label_id
            folder.mkdir(parents=True, exist_ok=True)
            if crop is None:  # segmentation failed: leave a note, no crop
                (folder / f"{name}.failed").touch()
                continue
            with replacing(folder / f"{name}.png", suffix=".png") as tmp:
                cv2.imwrite(str(tmp), crop)
            written += 1
    return written


def _field_done(root: Path, spec: SimSpec, layout: BatchLayout, field: int) -> bool:
    last = root / "crops" / layout.label_id(field, layout.labels_per_field - 1)
    return spec.handheld_shots == 0 or (last / f"h{spec.handheld_shots - 1}.png").exists()


def render_dataset(root: Path, specs: list[SimSpec], workers: int = 1,
                   progress: bool = True) -> dict:
    """Render every batch in `specs` into one folder data set; returns a summary."""
    root = Path(root)
    (root / "crops").mkdir(parents=True, exist_ok=True)
    ids = [s.batch_id for s in specs]
    if len(set(ids)) != len(ids):
        raise PufError(f"batch ids must differ: {ids}")
    meta_path = root / "simdata.json"
    meta = {"crop_size": specs[0].crop_size, "batches": [asdict(s) for s in specs]}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        # fields added to SimSpec since take their defaults
        old["batches"] = [asdict(SimSpec(**b)) for b in old.get("batches", [])]
        if old != meta:
            raise PufError(f"{root} holds another simulated data set; choose a new folder")
    meta_path.write_text(json.dumps(meta, indent=1))
    jobs = []
    rows = []
    layouts = [make_layout(spec) for spec in specs]
    if len({layout.pattern_set for layout in layouts}) > 1:
        raise PufError("the batches of one data set must share one pattern set")
    assert layouts[0].pattern_set is not None  # make_layout names one
    layouts[0].pattern_set.save(root / PATTERN_SET_FILE)
    for spec, layout in zip(specs, layouts, strict=True):
        for field in range(layout.fields_per_batch):
            for slot in range(layout.labels_per_field):
                rows.append((layout.label_id(field, slot), spec.batch_id,
                             layout.pattern_of(field, slot)))
        todo = [f for f in range(layout.fields_per_batch) if not _field_done(root, spec, layout, f)]
        for i in range(0, len(todo), 4):
            jobs.append((asdict(spec), str(root), todo[i:i + 4]))

    bar = tqdm(total=len(jobs), desc="rendering fields", unit="job", disable=not progress)
    written = 0
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for n in pool.imap_unordered(_render_fields, jobs):
                written += n
                bar.update()
    else:
        for job in jobs:
            written += _render_fields(job)
            bar.update()
    bar.close()
    with replacing(root / "labels.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label_id", "batch", "pattern"])
        writer.writerows(rows)
    return {"labels": len(rows), "crops_written": written, "root": str(root)}

