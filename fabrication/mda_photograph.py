"""`puf photograph --mm-config`: the batch's MDASequence through pymmcore-plus's own engine.

The acquisition is pymmcore-plus's: its `MDARunner` walks the sequence, its `MDAEngine`
moves the stage, sets the exposure and channel, runs the sequence's autofocus plan and
snaps; its events report each frame and its `cancel` stops at the next event boundary
(Ctrl-C or SIGTERM). We add what a factory needs on top:

- `FieldWriter`, a `frameReady` listener, writes each frame as one OME-TIFF field (written
  to a temporary name and renamed, so a field that exists is whole and a re-run skips it);
- `StrictEngine` turns what the stock engine only logs (a stage that did not reach the
  position, a camera that took no picture) into an error that stops the run and names the
  field, so no field is ever written from the wrong place.

A sequence file of the batch (useq JSON, as `puf design` writes stage/mda.json) keeps
its own settings (channel, exposure, autofocus); a CSV or Micro-Manager .pos plan runs at
the camera's current exposure. Each position must give one image: a field is one frame.
"""

from __future__ import annotations

import gc
import math
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.errors import PufError
from fabrication.batch_dir import BatchDir
from fabrication.field_files import FieldJob, write_field
from fabrication.microscope import Snapshot
from fabrication.mmcore import MMCoreMicroscope, pymmcore_warnings, snapshot_image
from fabrication.stage_plan import StagePosition, mda_sequence

if TYPE_CHECKING:
    import useq
    from pymmcore_plus import CMMCorePlus

# How far the stage may report itself from the commanded position (µm) before the frame
# is taken for a field photographed in the wrong place.
POSITION_TOLERANCE_UM = 1.0


def sequence_for(source: Path | None, positions: Sequence[StagePosition],
                 exposure_ms: float) -> useq.MDASequence:
    """The sequence to run for `positions` (the fields still to photograph): the batch's
    own sequence file with only those positions kept, or one built from the plan."""
    import useq

    text = source.read_text(encoding="utf-8") if source is not None else ""
    if '"stage_positions"' not in text:
        return mda_sequence(positions, exposure_ms)
    full = useq.MDASequence.model_validate_json(text)
    by_name = {p.name: p for p in full.stage_positions}
    kept = [by_name[p.label] for p in positions]
    sequence = full.model_copy(update={
        "stage_positions": tuple(kept),
        "metadata": {**full.metadata, "fields": [p.field for p in positions]},
    })
    extra = {axis: size for axis, size in sequence.sizes.items() if axis != "p" and size > 1}
    if extra or any(p.sequence is not None for p in kept):
        raise PufError(f"{source}: each position must give one image (a field), but the sequence "
                       f"also has {extra or 'a sub-sequence at a position'}")
    return sequence


def _strict_engine(core: CMMCorePlus, fields: Sequence[int]):
    """pymmcore-plus's MDAEngine that stops where the stock one logs a failure and goes on."""
    from pymmcore_plus.mda import MDAEngine

    class StrictEngine(MDAEngine):
        def setup_event(self, event) -> None:
            with pymmcore_warnings() as said:
                super().setup_event(event)
            if event.x_pos is None or event.y_pos is None:
                return
            x, y = (float(v) for v in core.getXYPosition())
            if math.hypot(x - event.x_pos, y - event.y_pos) > POSITION_TOLERANCE_UM:
                field = fields[event.index.get("p", 0)]
                raise PufError(
                    f"field {field}: the stage {core.getXYStageDevice()!r} is at ({x:.1f}, {y:.1f}) µm, "
                    f"not at ({event.x_pos:.1f}, {event.y_pos:.1f}) µm"
                    f"{': ' + said[-1] if said else ''}; the fields written so far are kept")

        def exec_event(self, event):
            frames = 0
            with pymmcore_warnings() as said:
                for payload in super().exec_event(event):
                    frames += payload is not None
                    yield payload
            if frames == 0 and event.action is not None and event.action.type == "acquire_image":
                field = fields[event.index.get("p", 0)]
                raise PufError(f"field {field}: the camera {core.getCameraDevice()!r} took no picture"
                               f"{': ' + said[-1] if said else ''}; the fields written so far are kept")

    return StrictEngine(core)


class FieldWriter:
    """A frameReady listener: each frame becomes its field's OME-TIFF. An error here is kept
    and cancels the run (pymmcore-plus only logs a listener's errors)."""

    def __init__(self, core: CMMCorePlus, batch: BatchDir, batch_id: str,
                 positions: Sequence[StagePosition], fallback_pixel_um: float,
                 progress: Callable[[dict], dict]) -> None:
        self.core, self.batch, self.batch_id = core, batch, batch_id
        self.positions, self.fallback_pixel_um, self.progress = positions, fallback_pixel_um, progress
        self.entries: list[dict] = []
        self.error: BaseException | None = None

    def capture(self, event) -> dict:
        """What the rig says of the frame's optics, for its OME metadata: when it was taken, the
        objective turret's position, the channel (the MDA event's, else the channel group's
        preset) and its emission wavelength when the channel's name gives it ("GFP 525/50",
        a band-pass filter's centre/width, or "513nm")."""
        core = self.core
        turrets = list(core.guessObjectiveDevices())
        channel = event.channel.config if event.channel is not None else None
        if channel is None and core.getChannelGroup():
            channel = core.getCurrentConfig(core.getChannelGroup()) or None
        wavelength = re.search(r"(\d{3,4})\s*(?:/\s*\d+|nm)\b", channel or "")
        return {"acquired": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "objective": core.getStateLabel(turrets[0]) if turrets else None,
                "channel": channel, "emission_nm": float(wavelength[1]) if wavelength else None}

    def frameReady(self, image, event, meta) -> None:  # noqa: N802 - pymmcore-plus's signal name

        if self.error is not None:
            return
        try:
            p = self.positions[event.index.get("p", 0)]
            where = meta.get("position") or {}
            snapshot = Snapshot(
                image=snapshot_image(image),
                exposure_ms=float(meta.get("exposure_ms") or self.core.getExposure()),
                stage_um=(float(where.get("x", p.x_um)), float(where.get("y", p.y_um))),
                pixel_size_um=float(meta.get("pixel_size_um") or self.fallback_pixel_um),
                extra=self.capture(event),
            )
            job = FieldJob(p.field, p.label, p.x_um, p.y_um)
            self.entries.append(self.progress(
                write_field(self.batch, self.batch_id, job, snapshot, ome=True)))
        except BaseException as error:  # noqa: BLE001 - kept, re-raised by shoot_mda
            self.error = error
            self.core.mda.cancel()


def shoot_mda(batch_dir: Path, batch_id: str, positions: Sequence[StagePosition], config: Path,
              sequence_source: Path | None, pixel_size_um: float,
              progress: Callable[[dict], dict]) -> list[dict]:
    """Photograph `positions` with the rig of `config` through pymmcore-plus's engine; return
    the manifest entries of the fields written. Ctrl-C cancels the run at the next event
    boundary: the fields written are kept, and KeyboardInterrupt goes on to the caller.

    The core must be gone before the interpreter exits, or pymmcore aborts the process
    ("FATAL: exception not rethrown"); UniMMCore leaves it in reference cycles (the frames of
    the C++ load it tries before a Python device), so they are collected here, after the
    run's own frames, which the error raised carries no more, have let it go."""
    if not positions:
        return []
    try:
        return _acquire(batch_dir, batch_id, positions, config, sequence_source, pixel_size_um,
                        progress)
    except (PufError, KeyboardInterrupt) as error:
        stopped = error.with_traceback(None)
    finally:
        gc.collect()
    raise stopped


def _acquire(batch_dir: Path, batch_id: str, positions: Sequence[StagePosition], config: Path,
             sequence_source: Path | None, pixel_size_um: float,
             progress: Callable[[dict], dict]) -> list[dict]:
    with MMCoreMicroscope(config_file=config, pixel_size_um=pixel_size_um) as rig:
        core = rig.core
        sequence = sequence_for(sequence_source, positions, float(core.getExposure()))
        core.mda.set_engine(_strict_engine(core, [p.field for p in positions]))
        writer = FieldWriter(core, BatchDir(batch_dir), batch_id, positions, rig.pixel_size_um, progress)
        failed: list[BaseException] = []

        def acquire() -> None:
            try:
                core.mda.run(sequence)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                failed.append(error)

        core.mda.events.frameReady.connect(writer.frameReady)
        thread = threading.Thread(target=acquire, name="puf-mda", daemon=True)
        try:
            thread.start()
            while thread.is_alive():
                thread.join(0.1)
        except KeyboardInterrupt:
            core.mda.cancel()
            thread.join()
            raise
        finally:
            core.mda.events.frameReady.disconnect(writer.frameReady)
        if writer.error is not None or failed:
            raise _taken(writer, failed)
        return writer.entries


def _taken(writer: FieldWriter, failed: list[BaseException]) -> BaseException:
    """The error that stopped the run, as a PufError unless it is one or an interrupt, held
    by nothing else and without its old traceback, whose frames hold the core."""
    error = writer.error or failed[0]
    writer.error = None
    failed.clear()
    if not isinstance(error, PufError | KeyboardInterrupt):
        error = PufError(f"the acquisition stopped: {type(error).__name__}: {error}; "
                         "the fields written so far are kept")
    return error.with_traceback(None)
