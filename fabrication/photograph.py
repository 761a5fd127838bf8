"""`puf photograph`: visit every stage position of a batch and take one TIFF per field.

BATCH_DIR/fields/field_0007.tif         --mm-config: an OME-TIFF (edge_app.ome_field) with
                                        pixel size, stage position, exposure, batch and
                                        field in its OME metadata; --sim: an RGB TIFF whose
                                        ImageDescription is that metadata as JSON
BATCH_DIR/fields/field_0007.truth.json  simulator only: where each label really is
BATCH_DIR/fields/manifest.json          the batch's fields, written at the end

Each TIFF is written to a temporary name and renamed into place, so a field that exists
is complete: an interrupted run resumes by shooting only the fields that are missing.
With --mm-config the batch's MDASequence runs through pymmcore-plus's own engine
(fabrication.mda_photograph). Ctrl-C or SIGTERM stops the simulator's workers after the
fields in hand; a kill -9 of puf ends them too (each watches its parent), so none is left shooting into the batch.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge_app.atomic_write import replacing
from edge_app.batch_dir import BatchDir, FieldsManifest
from edge_app.errors import PufError, cannot_write


@dataclass(frozen=True)
class FieldJob:
    field: int
    label: str
    x_um: float
    y_um: float


def write_field(batch: BatchDir, batch_id: str, job: FieldJob, snapshot, ome: bool = False) -> dict:
    """Write one field's TIFF (atomically) and truth; return its manifest entry. With `ome`
    the TIFF is an OME-TIFF (edge_app.ome_field), else its description is the metadata as JSON."""
    import cv2
    import tifffile

    from edge_app import ome_field

    meta = {
        "batch_id": batch_id,
        "field": job.field,
        "position_label": job.label,
        "stage_um": [round(v, 3) for v in snapshot.stage_um],
        "exposure_ms": snapshot.exposure_ms,
        "pixel_size_um": snapshot.pixel_size_um,
    }
    image = snapshot.image
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    path = batch.field_path(job.field)
    try:
        if snapshot.truth is not None:
            with replacing(batch.truth_path(job.field)) as tmp:
                tmp.write_text(json.dumps(snapshot.truth))
        with replacing(path, suffix=".tif") as tmp:
            if ome:
                capture = {key: snapshot.extra[key] for key in ome_field.CAPTURE_KEYS if snapshot.extra.get(key)}
                ome_field.write_field(tmp, image, {**meta, **capture})
            else:
                tifffile.imwrite(tmp, image, photometric="rgb" if image.ndim == 3 else "minisblack",
                                 description=json.dumps(meta), metadata=None,
                                 **ome_field.resolution_tags(snapshot.pixel_size_um))
    except OSError as error:
        raise cannot_write(path, error, "the fields written so far are kept") from None
    return {**meta, "file": path.name}


def read_field_meta(path: Path) -> dict:
    """A written field's manifest entry, from its OME metadata or its JSON description."""
    import tifffile

    from edge_app.ome_field import read_field

    try:
        meta = read_field(path)
        if meta is not None:
            return {**meta, "file": path.name}
        with tifffile.TiffFile(path) as tif:
            return {**json.loads(tif.pages[0].description), "file": path.name}
    except (OSError, ValueError, json.JSONDecodeError, tifffile.TiffFileError) as error:
        raise PufError(f"{path} is damaged ({error}); delete it and run again") from None


# ---- the simulator, one per worker process ------------------------------------------------
_worker: dict = {}


def _end_with_parent(parent_pid: int) -> None:
    """End this worker as soon as `puf photograph` is gone, even after a kill -9 that no handler sees:
    a worker left behind would go on shooting into the batch while a resumed run shoots the same fields."""
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:  # an orphan is adopted by another process
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _sim_pool_worker_init(batch_dir: str, seed: int, parent_pid: int) -> None:
    _end_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches us too: puf stops the pool
    _sim_worker_init(batch_dir, seed)


def _sim_worker_init(batch_dir: str, seed: int) -> None:
    import cv2

    from fabrication.calibration import StageCalibration
    from fabrication.sim.film import EtchedFilm
    from fabrication.sim.microscope import SimulatedMicroscope

    cv2.setNumThreads(1)
    batch = BatchDir(Path(batch_dir))
    layout = batch.layout()
    _worker["layout"] = layout
    _worker["batch"] = batch
    _worker["microscope"] = SimulatedMicroscope(
        EtchedFilm.load(batch.film_path), layout, StageCalibration.load(batch.calibration_path), seed=seed,
    )


def _sim_worker_shoot(job: FieldJob) -> dict:
    microscope = _worker["microscope"]
    microscope.move_to(job.x_um, job.y_um)
    return write_field(_worker["batch"], _worker["layout"].batch_id, job, microscope.snap())


def _shoot_sim(batch_dir: Path, jobs: list[FieldJob], seed: int, workers: int, progress) -> list[dict]:
    if not BatchDir(batch_dir).film_path.exists():
        raise PufError(f"no simulated film in {BatchDir(batch_dir).film_path.parent}: "
                       f"run 'puf etch {batch_dir} --sim' first")
    if workers <= 1:
        _sim_worker_init(str(batch_dir), seed)
        return [progress(_sim_worker_shoot(job)) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, context, _sim_pool_worker_init, (str(batch_dir), seed, os.getpid()))
    try:
        return [progress(entry) for entry in pool.map(_sim_worker_shoot, jobs, chunksize=2)]
    finally:  # after a stop or an error: the fields in hand are finished, the rest never started
        pool.shutdown(cancel_futures=True)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Stop on SIGTERM the way Ctrl-C stops: the workers ended, the fields written kept, resumable."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread handles signals
        yield
        return

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _default_plan(batch: BatchDir, mda: bool) -> Path:
    """The batch's own plan: its MDASequence for pymmcore-plus's engine when it has one."""
    return batch.mda_path if mda and batch.mda_path.exists() else batch.positions_csv_path


def photograph_batch(batch_dir: Path, mm_config: Path | None, positions: Path | None, pixel_size_um: float,
                     workers: int, seed: int, force: bool) -> tuple[int, int]:
    """Shoot the batch's fields that are missing (all of them with `force`) on the simulated
    microscope, or on the Micro-Manager rig of `mm_config`, and write the fields manifest.
    `positions` is the plan to visit (default: the batch's own); `pixel_size_um` is used where
    the rig reports none; `workers` and `seed` are the simulator's. Returns the fields shot and
    the fields that were already there."""
    from tqdm import tqdm

    from fabrication.stage_plan import read_positions

    batch = BatchDir(batch_dir)
    layout = batch.layout()
    source = positions or _default_plan(batch, mda=mm_config is not None)
    plan = read_positions(source)
    batch.fields_dir.mkdir(parents=True, exist_ok=True)
    jobs = [FieldJob(p.field, p.label, p.x_um, p.y_um) for p in plan]
    done = {job.field for job in jobs if batch.field_path(job.field).exists()}
    todo = jobs if force else [job for job in jobs if job.field not in done]
    todo_positions = [p for p in plan if p.field in {job.field for job in todo}]

    bar = tqdm(total=len(todo), unit="field", desc=f"photograph {layout.batch_id}", disable=None)

    def progress(entry: dict) -> dict:
        bar.update(1)
        return entry

    with bar, _sigterm_as_interrupt():
        if mm_config is None:
            shot = _shoot_sim(batch_dir, todo, seed, max(1, workers), progress)
        else:
            from fabrication.mda_photograph import shoot_mda

            shot = shoot_mda(batch_dir, layout.batch_id, todo_positions, mm_config, source, pixel_size_um,
                             progress)
    shot_fields = {entry["field"] for entry in shot}
    kept = [read_field_meta(batch.field_path(j.field)) for j in jobs if j.field not in shot_fields]
    entries = sorted(shot + kept, key=lambda e: e["field"])
    batch.write_fields_manifest(FieldsManifest(
        layout.batch_id, "sim" if mm_config is None else "pymmcore-plus MDA engine",
        entries[0]["pixel_size_um"] if entries else pixel_size_um, entries))
    return len(shot), len(kept)
