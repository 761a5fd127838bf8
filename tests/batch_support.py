"""Small batches for the factory-line tests: a one-field layout and its laser job, the laser
part of a batch folder as `puf design` writes it, the galvo driver engraving a fresh
simulated film, and a designed batch engraved into a film, ready to photograph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_app.cli import main as puf
from edge_app.layout import BatchLayout
from fabrication.galvo import GalvoLaser, GalvoSettings, LensField
from fabrication.gcode import MachineFrame, laser_job_lines
from fabrication.laser_power import PowerCalibration
from fabrication.patterns import pattern_names
from fabrication.sim.film import EtchedFilm
from fabrication.sim.galvo_board import SimulatedGalvoHead, SimulatedLmcBoard
from fabrication.sim.laser import engrave_layout

LABELS = 4  # labels in the one-field layout of the galvo tests


def make_layout(labels: int = 4) -> BatchLayout:
    """One field of `labels` labels in a row."""
    return BatchLayout(batch_id="T1", patterns=tuple(pattern_names()[:labels]),
                       label_cols=labels, label_rows=1, field_cols=1, field_rows=1)


def make_job(labels: int = 4) -> list[str]:
    """That layout's G-code job at 128 mW."""
    return list(laser_job_lines(make_layout(labels), 128.0, 7.0, PowerCalibration()))


def write_batch(batch_dir, lines: list[str], layout: BatchLayout) -> None:
    """What `puf etch` reads of a batch: layout.json, laser/job.gcode, its power table and settings."""
    (batch_dir / "laser").mkdir(parents=True)
    layout.save(batch_dir / "layout.json")
    (batch_dir / "laser" / "job.gcode").write_text("\n".join(lines) + "\n")
    PowerCalibration().save(batch_dir / "laser" / "power_calibration.json")
    (batch_dir / "laser" / "job.json").write_text(json.dumps(
        {"power_mw": 128.0, "s_value": 270, "frame": {"origin_x_mm": 0.0, "origin_y_mm": 0.0}}))


def connect(board: SimulatedLmcBoard, lines) -> tuple[GalvoLaser, EtchedFilm]:
    """The driver on `board`, whose marks engrave a fresh film."""
    settings = GalvoSettings()
    laser = GalvoLaser(board, settings, LensField(), PowerCalibration().mw_for_s, stall_margin_s=0.2)
    film = EtchedFilm(1)
    board.on_mark = SimulatedGalvoHead(film, laser.plan(lines).lens, settings.power, MachineFrame()).mark
    return laser, film


def marked_labels(film: EtchedFilm, layout) -> list[int]:
    """How many segments landed in each label's square (label-index order)."""
    counts = []
    half = layout.label_size_um / 2 + 5
    for field in range(layout.fields_per_batch):
        for slot in range(layout.labels_per_field):
            cx, cy = layout.label_center_um(field, slot)
            mid = (film.segments[:, :2] + film.segments[:, 2:4]) / 2
            counts.append(int(np.sum(np.all(np.abs(mid - (cx, cy)) <= half, axis=1))))
    return counts


def design_and_etch(batch_dir: Path, fields: str) -> Path:
    """A designed batch engraved into a simulated film, ready for `puf photograph --sim`."""
    assert puf(["design", str(batch_dir), "--fields", fields]) == 0
    film = EtchedFilm(5)
    engrave_layout(film, BatchLayout.load(batch_dir / "layout.json"), 128.0)
    (batch_dir / "sim").mkdir()
    film.save(batch_dir / "sim" / "film.npz")
    return batch_dir
