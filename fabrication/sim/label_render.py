"""One label's microscope crop, rendered straight from the simulated film.

The factory's way (`trainer.simdata.field_captures`) photographs a whole 1920x1440 field
with the simulated microscope and cuts each label out of it: most of those pixels are
never looked at. Here only the label's own film region is rendered (the film's texture
function, `EtchedFilm.render`: the same spot, the same texture), and the image is formed
at the crop's pixels with the microscope's own shot-to-shot variation
(`microscope.draw_exposure`) and image formation (`optics.expose`):

- defocus as a blur on the film grid, widened by what the capture's resampling adds;
- the label's corners jittered by segmentation's error, then the crop square sampled
  from the film as `crop_from_corners` samples it from a capture;
- the label's share of the frame's vignetting and uneven excitation;
- shot and read noise at the crop's pixels, scaled as bilinear sampling of a noisy
  capture scales them.

Left out: dust (a few specks a field, seldom on a label) and the stage slips that cut a
label at the field's edge (the factory path drops those labels; every label here is whole).

Each (film, label, seed, shot) renders the same crop every time. Crops are cached a
field at a time, each file written whole (temporary name, then renamed), so a killed
run resumes where it stopped and never finds a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import PufError
from edge_app.label_crop import CROP_SIZE
from edge_app.layout import BatchLayout
from fabrication.sim.film import FILM_PX_UM, EtchedFilm
from fabrication.sim.microscope import MicroscopeModel, draw_exposure
from fabrication.sim.optics import expose, illumination_at

RECIPE = "label_render 1"  # in the cache key: crops of an older recipe are rendered again
CORNER_JITTER_PX = 1.5  # segmentation's corner error, capture px (as trainer.simdata's default)
_SAMPLING_VAR = 1.0 / 6.0  # variance (px^2) bilinear resampling adds at a random phase
MAX_CROP_SIZE = 1024  # a crop larger than the label's film region would only interpolate it
_NOISE_SCALE = 2.0 / 3.0  # noise std after bilinear sampling of a noisy image, on average
MICROSCOPE = MicroscopeModel()  # the factory microscope, as `trainer.simdata` photographs with


def label_crops(film: EtchedFilm, layout: BatchLayout, field: int, slot: int, seed: int, shots: int = 1,
                size: int = CROP_SIZE, model: MicroscopeModel = MICROSCOPE,
                jitter_px: float = CORNER_JITTER_PX) -> np.ndarray:
    """(shots, size, size, 3) BGR uint8 crops of as many microscope captures of a label,
    in canonical orientation, as the factory's field capture and cut would give them.
    The label's film region is rendered once for all of them."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise PufError(f"a label needs at least one capture, got shots={shots!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_CROP_SIZE:
        raise PufError(f"a crop's side must be 8 to {MAX_CROP_SIZE} px, got {size!r}")
    px_um = model.pixel_size_um  # design µm a capture pixel (the factory's calibration has scale 1)
    film_px = px_um / FILM_PX_UM  # film px a capture pixel
    widest = math.sqrt((model.defocus_px[1] * film_px) ** 2 + _SAMPLING_VAR * film_px**2)
    margin = int(math.ceil(4 * widest + 6 * jitter_px * film_px)) + 2
    cx, cy = layout.label_center_um(field, slot)
    half = layout.label_size_um / 2
    i0, j0 = math.floor((cx - half) / FILM_PX_UM) - margin, math.floor((cy - half) / FILM_PX_UM) - margin
    side = math.ceil(2 * half / FILM_PX_UM) + 2 * margin + 1
    emission = film.render(i0, j0, side, side)
    # where the crop's pixels lie in the frame, -1..1 from its centre (the field's centre)
    fx, fy = layout.field_center_um(field)
    step = np.arange(size) * (2 * half / size) - half + half / size
    x = (cx + step - fx) / ((model.width_px - 1) / 2 * px_um)
    y = (cy + step - fy) / ((model.height_px - 1) / 2 * px_um)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32) * size - 0.5
    outline = np.array([[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]])
    crops = []
    for shot in range(shots):
        rng = np.random.default_rng([seed & 0xFFFFFFFF, film.seed & 0xFFFFFFFF, field, slot, shot, 0x1AB])
        exposure = draw_exposure(rng, model)
        corners = outline + rng.normal(0.0, jitter_px * px_um, (4, 2))
        sigma = math.sqrt((exposure.defocus_sigma_px * film_px) ** 2 + _SAMPLING_VAR * film_px**2)
        to_film = cv2.getPerspectiveTransform(square, (corners / FILM_PX_UM - (i0, j0)).astype(np.float32))
        view = cv2.warpPerspective(cv2.GaussianBlur(emission, (0, 0), sigma), to_film, (size, size),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        at_crop = replace(exposure, defocus_sigma_px=0.0, electrons_per_dn=exposure.electrons_per_dn / _NOISE_SCALE**2,
                          read_noise_dn=exposure.read_noise_dn * _NOISE_SCALE)
        crops.append(expose(view, at_crop, rng, illumination_at(x[None, :], y[:, None], exposure)))
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
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, crops=crops)
    os.replace(tmp, path)
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
