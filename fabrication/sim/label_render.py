"""One label's microscope crop, rendered straight from the simulated film.

The factory's way (`trainer.simdata.field_captures`) photographs a whole 1920x1440 field
with the simulated microscope and cuts each label out of it: most of those pixels are
never looked at. Here the same capture is made of a window just around one label: only
the label's own film region is rendered (the film's texture function, `EtchedFilm.render`:
the same spot, the same texture), once for all of its captures, and each capture goes
through the microscope's own steps on that window: its shot-to-shot variation
(`microscope.draw_exposure`, the stage's rotation error), its pixels' sampling of the film
(`microscope.view_of`), the lens's blur (`optics.defocus`), the window's share of the
frame's vignetting and uneven excitation, the sensor (`optics.sense`), the window's share
of the frame's dust (`optics.add_dust`), and the cut at the label's corners jittered by
segmentation's error (`crop_from_corners`). The sensor forms only the pixels the cut
reads (`pixels_read`, about half of the window): each pixel's noise is its own, so those
pixels are what the whole window would have had, and the rest are never looked at.

Left out: the stage's offset error (it moves the label in the frame by a few µm, which the
cut at its true corners undoes) and the slips that cut a label at the field's edge (the
factory path drops those labels; every label here is whole).

Each (film, label, seed, shot) renders the same crop every time. Crops are cached a
field at a time, each file written whole (temporary name, then renamed), so a killed
run resumes where it stopped and never finds a half-written file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from edge_app.atomic_write import replacing
from edge_app.errors import PufError
from edge_app.label_crop import CROP_SIZE
from edge_app.layout import BatchLayout
from fabrication.sim.film import FILM_PX_UM, EtchedFilm
from fabrication.sim.microscope import MicroscopeModel, draw_exposure, dust_counts, image_to_design, view_of
from fabrication.sim.optics import Exposure, add_dust, defocus, illumination_at, sense

RECIPE = "label_render 4"  # in the cache key: crops of an older recipe are rendered again
CORNER_JITTER_PX = 1.5  # segmentation's corner error, capture px (as trainer.simdata's default)
MAX_CROP_SIZE = 1024  # a crop larger than the label's film region would only interpolate it
_WINDOW_MARGIN_PX = 12  # capture px around the label: defocus and corner error stay inside
_EDGE_SLACK_PX = 0.02  # a sample this near a pixel edge may round to either side in the warp
MICROSCOPE = MicroscopeModel()  # the factory microscope, as `trainer.simdata` photographs with


def jittered(corners, jitter_px: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The corners TL, TR, BR, BL as segmentation finds them: each off by its error."""
    quad = np.asarray(corners, np.float32).reshape(4, 2)
    if jitter_px > 0:
        rng = rng or np.random.default_rng()
        quad = quad + rng.normal(0.0, jitter_px, quad.shape).astype(np.float32)
    return quad


def _crop_warp(quad: np.ndarray, size: int) -> np.ndarray:
    """The perspective map from a capture to the crop of the label at `quad`."""
    # segmentation's convention (edge_app.segment): the label's outer corners land on the
    # crop's outer pixel edges
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32) * size - 0.5
    return cv2.getPerspectiveTransform(quad, square)


def crop_from_corners(image: np.ndarray, corners, size: int = CROP_SIZE,
                      jitter_px: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Warp the quadrilateral TL, TR, BR, BL onto a size x size square: a label cut from a
    capture at its (optionally jittered) corners, the same way for a field and a window."""
    return cv2.warpPerspective(image, _crop_warp(jittered(corners, jitter_px, rng), size), (size, size),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def pixels_read(quad: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices (row * width + column) of the capture pixels that `crop_from_corners`
    at `quad` reads: the two by two neighbours of each crop pixel's bilinear sample (a crop
    pixel spans 2-3 capture pixels, so this is about half of them: the only ones worth
    forming), and a third row or column where a sample lies within rounding of an edge."""
    h, w = shape
    points = cv2.perspectiveTransform(_crop_grid(size), np.linalg.inv(_crop_warp(quad, size))).reshape(-1, 2)
    lo = np.floor(points - _EDGE_SLACK_PX).astype(np.int64)
    beyond = np.floor(points + _EDGE_SLACK_PX).astype(np.int64) + 1  # lo + 1, or lo + 2 near an edge
    edge = (beyond != lo + 1).any(1)
    # each sample reads the 2 x 2 pixels from `lo`; near an edge also those from `beyond`
    # (a few more pixels formed than read, never fewer)
    corners = ((lo[:, 1], lo[:, 0]), (lo[edge, 1], beyond[edge, 0]), (beyond[edge, 1], lo[edge, 0]),
               (beyond[edge, 1], beyond[edge, 0]))
    read = np.zeros(h * w, bool)
    for rows, cols in corners:
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            read[np.clip(rows + dy, 0, h - 1) * w + np.clip(cols + dx, 0, w - 1)] = True
    return np.flatnonzero(read)


@functools.cache
def _crop_grid(size: int) -> np.ndarray:
    """The crop's pixel centres (x, y), row by row, as cv2.perspectiveTransform takes points."""
    return np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 1, 2).astype(np.float64)


def _window_light(to_design: np.ndarray, side: int, frame_centre: tuple[float, float],
                  frame_half: tuple[float, float], exposure: Exposure) -> np.ndarray:
    """`illumination_at` over a side x side window of the frame (to_design: its pixels to
    design µm), on a grid of every 16th pixel interpolated up (the light is smooth), the
    grid reaching a cell beyond the window so that no pixel is extrapolated."""
    step = 16
    cells = -(-side // step) + 2
    at = (np.arange(cells) - 0.5) * step - 0.5  # window px of the centres cv2.resize gives the cells
    u, v = np.meshgrid(at, at)
    x = (to_design[0, 0] * u + to_design[0, 1] * v + to_design[0, 2] - frame_centre[0]) / frame_half[0]
    y = (to_design[1, 0] * u + to_design[1, 1] * v + to_design[1, 2] - frame_centre[1]) / frame_half[1]
    light = cv2.resize(illumination_at(x, y, exposure), (cells * step, cells * step), interpolation=cv2.INTER_LINEAR)
    return light[step:step + side, step:step + side]


def _image_of(pixels: np.ndarray, read: np.ndarray, side: int) -> np.ndarray:
    """A black side x side BGR image with `pixels` (N BGR uint8 values) at the flat indices `read`."""
    planes = []
    for channel in pixels.reshape(-1, 3).T:
        plane = np.zeros(side * side, np.uint8)
        plane[read] = channel
        planes.append(plane.reshape(side, side))
    return cv2.merge(planes)


def label_crops(film: EtchedFilm, layout: BatchLayout, field: int, slot: int, seed: int, shots: int = 1,
                size: int = CROP_SIZE, model: MicroscopeModel = MICROSCOPE,
                jitter_px: float = CORNER_JITTER_PX) -> np.ndarray:
    """(shots, size, size, 3) BGR uint8 crops of as many microscope captures of a label,
    in canonical orientation, as the factory's field capture and cut would give them.
    The label's film region is rendered once for all of them; each capture forms only the
    pixels its crop reads (`pixels_read`), each as the whole frame would have it."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise PufError(f"a label needs at least one capture, got shots={shots!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_CROP_SIZE:
        raise PufError(f"a crop's side must be 8 to {MAX_CROP_SIZE} px, got {size!r}")
    px_um = model.pixel_size_um  # design µm a capture pixel (the factory's calibration has scale 1)
    cx, cy = layout.label_center_um(field, slot)
    half = layout.label_size_um / 2
    side_px = int(math.ceil(2 * half / px_um)) + 2 * _WINDOW_MARGIN_PX  # the window: label and margin
    turn = math.radians(model.stage_rotation_deg)
    reach_um = side_px * px_um / 2 * (math.cos(turn) + math.sin(turn)) + 4 * FILM_PX_UM  # the window turned
    i0, j0 = math.floor((cx - reach_um) / FILM_PX_UM), math.floor((cy - reach_um) / FILM_PX_UM)
    film_side = math.ceil(2 * reach_um / FILM_PX_UM) + 1
    emission = film.render(i0, j0, film_side, film_side)
    frame_half = ((model.width_px - 1) / 2 * px_um, (model.height_px - 1) / 2 * px_um)
    fx, fy = layout.field_center_um(field)
    share = side_px * side_px / (model.width_px * model.height_px)  # of the frame's dust
    outline = np.array([[cx - half, cy - half, 1], [cx + half, cy - half, 1], [cx + half, cy + half, 1],
                        [cx - half, cy + half, 1]])
    crops = []
    for shot in range(shots):
        rng = np.random.default_rng([seed & 0xFFFFFFFF, film.seed & 0xFFFFFFFF, field, slot, shot, 0x1AB])
        angle = math.radians(rng.uniform(-model.stage_rotation_deg, model.stage_rotation_deg))
        to_design = image_to_design((cx, cy), angle, px_um, (side_px, side_px))
        exposure = draw_exposure(rng, model)
        quad = jittered(outline @ cv2.invertAffineTransform(to_design).T, jitter_px, rng)
        read = pixels_read(quad, size, (side_px, side_px))
        blurred = defocus(view_of(emission, (i0, j0), to_design, (side_px, side_px)), exposure)
        light = _window_light(to_design, side_px, (fx, fy), frame_half, exposure)
        signal = cv2.multiply(blurred.ravel()[read, None], light.ravel()[read, None], scale=exposure.gain)
        window = _image_of(sense(signal, exposure, rng), read, side_px)
        specks, fibres = (int(rng.binomial(count, share)) for count in dust_counts(rng))
        if specks or fibres:
            add_dust(window, rng, specks, fibres)
        crops.append(crop_from_corners(window, quad, size))
    return np.stack(crops)


def _cache_key(film: EtchedFilm, layout: BatchLayout, field: int, seed: int, shots: int, size: int,
               model: MicroscopeModel) -> str:
    """What a field's crops depend on: the film (seed, style, every etched line), where
    its labels are, the capture seed and shots, the crop size, the microscope, the recipe."""
    parts = [RECIPE, film.seed, film.style.to_json(), hashlib.sha256(film.segments.tobytes()).hexdigest(),
             layout.label_size_um, [layout.label_center_um(field, s) for s in range(layout.labels_per_field)],
             layout.field_center_um(field), seed, shots, size, asdict(model)]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _read_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """A field's cached crops; None if not rendered yet, or unreadable or not what this
    field's crops are (a damaged cache file is only rendered again: nothing is lost)."""
    try:
        with open(path, "rb") as handle:  # np.load leaves a file it cannot parse open
            data = np.load(handle, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                return None
            with data:
                crops = data["crops"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # OSError: not there yet, too
        return None
    return crops if crops.shape == shape and crops.dtype == np.uint8 else None


def field_crops(film: EtchedFilm, layout: BatchLayout, field: int, seed: int, shots: int, folder: Path,
                size: int = CROP_SIZE, model: MicroscopeModel = MICROSCOPE) -> tuple[list[str], np.ndarray]:
    """Label ids and crops (labels, shots, size, size, 3) of every label of one field:
    read from `folder` if rendered before, else rendered and saved whole."""
    folder = Path(folder)
    path = folder / f"{layout.batch_id}-f{field:05d}-{_cache_key(film, layout, field, seed, shots, size, model)}.npz"
    ids = [layout.label_id(field, slot) for slot in range(layout.labels_per_field)]
    shape = (layout.labels_per_field, shots, size, size, 3)
    cached = _read_cached(path, shape)
    if cached is not None:
        return ids, cached
    crops = np.stack([label_crops(film, layout, field, slot, seed, shots, size, model)
                      for slot in range(layout.labels_per_field)])
    folder.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".npz") as tmp:
        np.savez(tmp, crops=crops)
    return ids, crops


def render_fields(film: EtchedFilm, layout: BatchLayout, fields: Sequence[int], seed: int, shots: int,
                  folder: Path, size: int = CROP_SIZE, model: MicroscopeModel = MICROSCOPE,
                  done: Callable[[int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """`field_crops` of many fields, in order, label-major; `done(field)` after each."""
    ids: list[str] = []
    crops = []
    for field in fields:
        field_ids, field_crop = field_crops(film, layout, field, seed, shots, folder, size, model)
        ids += field_ids
        crops.append(field_crop)
        if done is not None:
            done(field)
    empty = np.zeros((0, shots, size, size, 3), np.uint8)
    return ids, np.concatenate(crops) if crops else empty
