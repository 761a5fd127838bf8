"""`puf photograph`: visit every stage position of a batch and take one TIFF per field.

BATCH_DIR/fields/field_0007.tif         --mm-config: an OME-TIFF (fabrication.ome_field) with
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

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
from tqdm import tqdm

from edge_app.errors import PufError
from fabrication.batch_dir import BatchDir, FieldsManifest
from fabrication.calibration import StageCalibration
from fabrication.field_files import FieldJob, read_field_meta, write_field
from fabrication.mda_photograph import shoot_mda
from fabrication.sim.film import EtchedFilm
from fabrication.sim.microscope import SimulatedMicroscope
from fabrication.stage_plan import read_positions

# ---- the simulator, one per worker process ------------------------------------------------
_worker: dict = {}


def _end_with_parent(parent_pid: int) -> None:
    """End this worker as soon as `puf photograph` is gone, even after a kill -9 that no handler sees:
    a worker left behind would go on shooting into the batch while a resumed run shoots the same fields."""
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
            shot = shoot_mda(batch_dir, layout.batch_id, todo_positions, mm_config, source, pixel_size_um,
                             progress)
    shot_fields = {entry["field"] for entry in shot}
    kept = [read_field_meta(batch.field_path(j.field)) for j in jobs if j.field not in shot_fields]
    entries = sorted(shot + kept, key=lambda e: e["field"])
    batch.write_fields_manifest(FieldsManifest(
        layout.batch_id, "sim" if mm_config is None else "pymmcore-plus MDA engine",
        entries[0]["pixel_size_um"] if entries else pixel_size_um, entries))
    return len(shot), len(kept)
