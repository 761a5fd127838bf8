"""A small simulated factory for the segmentation tests: a batch layout, its film etched at
128 mW, microscope frames and handheld photos of its fields, the glyph templates. Each is
cached (a snapshot is taken once per session) and read-only.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from edge_app.layout import BatchLayout
from edge_app.orientation import PatternTemplates, render_templates
from fabrication.calibration import StageCalibration
from fabrication.patterns import pattern_by_name, pattern_names
from fabrication.sim.field_camera import capture_label
from fabrication.sim.film import EtchedFilm
from fabrication.sim.laser import engrave_layout
from fabrication.sim.microscope import MicroscopeModel, SimulatedMicroscope

PIXEL_UM = 0.6
LABEL_PX = 200.0 / PIXEL_UM
CALIBRATION = StageCalibration((5000.0, 3000.0), 0.0, 1.0)


@cache
def make_layout(batch_id: str = "T1", field_cols: int = 3, field_rows: int = 2,
                pitch_um: float = 250.0) -> BatchLayout:
    names = pattern_names()
    count = 12 * field_cols * field_rows
    return BatchLayout(batch_id, tuple(names[(i * 7) % len(names)] for i in range(count)),
                       pitch_um=pitch_um, field_cols=field_cols, field_rows=field_rows)


@cache
def make_film(layout: BatchLayout, blank: tuple[int, ...] = (), seed: int = 7) -> EtchedFilm:
    """The layout etched at 128 mW, except the label indices in `blank` (not etched)."""
    film = EtchedFilm(seed)
    engrave_layout(film, layout, [0.0 if i in blank else 128.0 for i in range(layout.label_count)])
    return film


@cache
def snap(layout: BatchLayout, field: int, seed: int = 3, slip: float = 0.0,
         blank: tuple[int, ...] = ()) -> tuple[np.ndarray, dict]:
    """One simulated microscope frame of a field (BGR uint8) and its truth."""
    model = MicroscopeModel(slip_probability=slip)
    microscope = SimulatedMicroscope(make_film(layout, blank), layout, CALIBRATION, seed, model)
    microscope.move_to(*CALIBRATION.design_to_stage(*layout.field_center_um(field)))
    shot = microscope.snap()
    shot.image.setflags(write=False)
    return shot.image, shot.truth


@cache
def handheld(layout: BatchLayout, field: int, slot: int, seed: int) -> tuple[np.ndarray, dict]:
    image, truth = capture_label(make_film(layout), layout, field, slot, seed)
    image.setflags(write=False)
    return image, truth


@cache
def templates_for(layout: BatchLayout, line_um: float = 7.0) -> PatternTemplates:
    glyphs = {name: pattern_by_name(name).strokes for name in pattern_names()}
    return render_templates(glyphs, glyph_frac=layout.glyph_size_um / layout.label_size_um,
                            line_frac=line_um / layout.label_size_um)
