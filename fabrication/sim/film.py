"""The simulated perovskite quantum-dot film: a deterministic texture of (seed, x, y).

A spin-coated CsPbBr3 film is a mosaic of crystallites of varying size and brightness,
separated by darker grain boundaries, with voids and cracks, on top of a slow variation
in thickness. The texture here is a pure function of the film seed and the film
coordinates (sampled on a fixed grid of FILM_PX_UM), so the same spot renders the same
every time it is photographed, and spots far apart are independent.

Real films differ from batch to batch and lab to lab, so the film has a style
(`FilmStyle`: grain size, grain contrast, smooth or faceted grains, mottling); the default
style is the film this simulator always made, bit for bit.

What the laser engraved is kept beside the seed as line segments; rendering a region
darkens the texture under them (see `fabrication.sim.laser` for width and darkness).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import cv2
import numpy as np

from edge_app.atomic_write import replacing
from edge_app.errors import PufError
from fabrication.laser_response import darkness, line_width_um

FILM_PX_UM = 0.5  # the film's sampling grid

_GRAIN_CELL = 6  # film px: one crystallite seed per cell (about 3 µm grains) in the default style
_GRAIN_MEAN = 0.55  # about the mean of the default grain mosaic: grain contrast scales deviations from it
_FACET_DIRECTIONS = 16  # facet normals are chosen from this many compass directions
_LIGHT = math.radians(225)  # where the facets' shading light comes from (upper left)
_VOID_CELL = 40
_CRACK_CELL = 160
_THICKNESS_CELLS = (240, 60)  # slow and medium thickness variation
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class FilmStyle:
    """How a film looks, so that tests and training can cover films unlike the default.

    grain_um: spacing of crystallite seeds, about the mean grain diameter (1-20 µm, a
        multiple of the 0.5 µm film grid); the default film has 3 µm grains.
    contrast: spread of grain brightness around its mean, 1.0 the default film's; 0 makes
        every grain alike (only voids, cracks and mottling remain).
    faceted: grains as flat-faced pyramids with sharp facet edges instead of smooth domes.
    mottling: amplitude of the slow patchy brightness (thickness) variation, 1.0 the default
        film's, 0 none, at most 3.
    """

    grain_um: float = _GRAIN_CELL * FILM_PX_UM
    contrast: float = 1.0
    faceted: bool = False
    mottling: float = 1.0

    def __post_init__(self) -> None:
        for name in ("grain_um", "contrast", "mottling"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise PufError(f"film {name} must be a number, got {value!r}")
        if not 1.0 <= self.grain_um <= 20.0:
            raise PufError(f"film grain_um must be between 1 and 20 µm, got {self.grain_um:g}")
        if self.grain_um / FILM_PX_UM != round(self.grain_um / FILM_PX_UM):
            raise PufError(f"film grain_um must be a multiple of the film's {FILM_PX_UM:g} µm grid, "
                           f"got {self.grain_um:g}")
        if not 0.0 <= self.contrast <= 2.0:
            raise PufError(f"film contrast must be between 0 and 2 (1 = the default film's), got {self.contrast:g}")
        if not isinstance(self.faceted, bool):
            raise PufError(f"film faceted must be true or false, got {self.faceted!r}")
        if not 0.0 <= self.mottling <= 3.0:
            raise PufError(f"film mottling must be between 0 and 3 (1 = the default film's), got {self.mottling:g}")

    @property
    def grain_px(self) -> int:
        """Grain seed spacing in film pixels."""
        return int(round(self.grain_um / FILM_PX_UM))

    @classmethod
    def parse(cls, text: str) -> FilmStyle:
        """A style from a preset name, optionally followed by overrides, the way the
        command line takes it: "coarse", "fine,faceted=yes", "grain_um=6,contrast=0.7"."""
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        base = FILM_PRESETS["default"]
        if parts and "=" not in parts[0]:
            name = parts.pop(0)
            if name not in FILM_PRESETS:
                raise PufError(f"unknown film style {name!r}; presets: {', '.join(FILM_PRESETS)}")
            base = FILM_PRESETS[name]
        kinds = {f.name: f.type for f in fields(cls)}
        changes: dict = {}
        for part in parts:
            key, _, value = (s.strip() for s in part.partition("="))
            if key not in kinds or not value:
                raise PufError(f"film style {text!r}: {part!r} is not NAME=VALUE with NAME one of "
                               f"{', '.join(kinds)}")
            if key == "faceted":
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise PufError(f"film faceted must be yes or no, got {value!r}")
                changes[key] = value.lower() in ("1", "true", "yes")
                continue
            try:
                changes[key] = float(value)
            except ValueError:
                raise PufError(f"film {key} must be a number, got {value!r}") from None
        return replace(base, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FilmStyle:
        try:
            values = json.loads(text)
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise PufError(f"not a film style: {text!r} ({error})") from None


FILM_PRESETS: dict[str, FilmStyle] = {
    "default": FilmStyle(),
    "coarse": FilmStyle(grain_um=9.0, contrast=0.5),  # about 3x larger grains, half the contrast
    "fine": FilmStyle(grain_um=1.0),
    "faceted": FilmStyle(faceted=True),
    "mottled": FilmStyle(mottling=2.5),
}
DEFAULT_STYLE = FILM_PRESETS["default"]


def _hash(seed: int, salt: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """splitmix64 of (seed, salt, a, b): independent uint64 per integer coordinate."""
    key = np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & _MASK64)
    x = (a.astype(np.int64).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)) ^ (
        b.astype(np.int64).astype(np.uint64) * np.uint64(0x94D049BB133111EB)
    )
    x = x ^ key
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(seed: int, salt: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (_hash(seed, salt, a, b) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _cells(start: int, stop: int, cell: int, margin: int) -> np.ndarray:
    return np.arange(start // cell - margin, (stop - 1) // cell + margin + 1)


def _grains(seed: int, i0: int, j0: int, w: int, h: int, style: FilmStyle = DEFAULT_STYLE) -> np.ndarray:
    """Crystallite mosaic: Voronoi cells of jittered seeds, domed (or faceted) and edged darker."""
    cell = style.grain_px
    pad = 3 * cell
    ci = _cells(i0 - pad, i0 + w + pad, cell, 0)
    cj = _cells(j0 - pad, j0 + h + pad, cell, 0)
    gi, gj = np.meshgrid(ci, cj)
    keep = _uniform(seed, 1, gi, gj) < 0.8  # missing seeds make larger grains
    sx = (gi * cell + (_uniform(seed, 2, gi, gj) * cell).astype(int))[keep]
    sy = (gj * cell + (_uniform(seed, 3, gi, gj) * cell).astype(int))[keep]
    brightness = 0.3 + 0.7 * _uniform(seed, 4, gi, gj)[keep] ** 0.6
    ox, oy = ci[0] * cell, cj[0] * cell
    size = ((cj[-1] + 1) * cell - oy, (ci[-1] + 1) * cell - ox)
    seeds = np.full(size, 255, np.uint8)
    seeds[sy - oy, sx - ox] = 0
    dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(labels.max() + 1, np.float32)
    seed_labels = labels[sy - oy, sx - ox]
    lut[seed_labels] = brightness
    # crop one pixel wider than asked so grain edges are known on the region's border
    rows, cols = slice(j0 - oy, j0 - oy + h + 1), slice(i0 - ox, i0 - ox + w + 1)
    labels, dist = labels[rows, cols], dist[rows, cols]
    if style.faceted:
        keys = (gi[keep], gj[keep])
        shade = _facets(seed, keys, sx, sy, seed_labels, len(lut), labels[:-1, :-1], i0, j0)
    else:  # a dome: dimmer away from the seed, over the same fraction of any grain size
        scale = _GRAIN_CELL / cell
        shade = np.minimum(dist[:-1, :-1] if scale == 1.0 else dist[:-1, :-1] * scale, np.float32(6.0))
        shade *= np.float32(0.05)  # in place: 1 - 0.05 min(d, 6), the same float32 sums
        np.subtract(np.float32(1.0), shade, out=shade)
    value = lut[labels[:-1, :-1]]
    value *= shade
    edges = (labels[:-1, 1:] != labels[:-1, :-1]) | (labels[1:, :-1] != labels[:-1, :-1])
    np.multiply(value, np.float32(0.6), out=value, where=edges)  # grain edges darker, in place
    if style.contrast != 1.0:  # (skipped at 1.0: the default film stays bit for bit what it was)
        value = np.maximum(np.float32(_GRAIN_MEAN) + np.float32(style.contrast) * (value - np.float32(_GRAIN_MEAN)),
                           np.float32(0.0))
    return value


def _facets(seed: int, keys: tuple[np.ndarray, np.ndarray], sx: np.ndarray, sy: np.ndarray,
            seed_labels: np.ndarray, count: int, labels: np.ndarray, i0: int, j0: int) -> np.ndarray:
    """Shading of grains as pyramids of 3-6 flat faces around their seed, lit from one side:
    each pixel takes the face whose outward normal points most its way from the seed, so
    faces meet in sharp edges. Only table look-ups and products, no per-pixel trigonometry,
    so a spot shades the same from any window."""
    angles = 2 * np.pi * np.arange(_FACET_DIRECTIONS) / _FACET_DIRECTIONS
    cos_t, sin_t = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    dim = ((1 - np.cos(angles - _LIGHT)) / 2).astype(np.float32)  # 0 facing the light, 1 away
    faces = np.zeros(count, np.int64)
    first = np.zeros(count, np.int64)
    tilt = np.zeros(count, np.float32)
    faces[seed_labels] = 3 + (_uniform(seed, 5, *keys) * 4).astype(int)
    first[seed_labels] = (_uniform(seed, 6, *keys) * _FACET_DIRECTIONS).astype(int)
    tilt[seed_labels] = 0.15 + 0.3 * _uniform(seed, 7, *keys)
    seed_x = np.zeros(count, np.float32)
    seed_y = np.zeros(count, np.float32)
    seed_x[seed_labels], seed_y[seed_labels] = sx, sy
    h, w = labels.shape
    dx = (np.arange(i0, i0 + w, dtype=np.float32)[None, :] - seed_x[labels])
    dy = (np.arange(j0, j0 + h, dtype=np.float32)[:, None] - seed_y[labels])
    n, base = faces[labels], first[labels]
    best = np.full(labels.shape, -np.inf, np.float32)
    face = np.zeros(labels.shape, np.int64)
    for k in range(6):
        direction = (base + (k * _FACET_DIRECTIONS) // n) % _FACET_DIRECTIONS
        dot = np.where(k < n, dx * cos_t[direction] + dy * sin_t[direction], np.float32(-np.inf))
        better = dot > best
        best = np.where(better, dot, best)
        face = np.where(better, direction, face)
    return np.float32(1.0) - tilt[labels] * dim[face]


def _smooth_noise(seed: int, salt: int, cell: int, i0: int, j0: int, w: int, h: int) -> np.ndarray:
    """Value noise with smoothstep interpolation between hashed grid nodes, in -1..1.

    Interpolated element by element, not as a product of weight matrices: a BLAS product's
    summation order depends on the matrix sizes, so the same spot would differ in its last
    bits between two windows."""

    def axis(start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(start, start + count) / cell
        base = np.floor(pos)
        t = pos - base
        nodes = np.arange(int(base[0]), int(base[-1]) + 2)
        return (t * t * (3 - 2 * t)).astype(np.float32), (base - nodes[0]).astype(int), nodes

    tx, lx, nx = axis(i0, w)
    ty, ly, ny = axis(j0, h)
    gi, gj = np.meshgrid(nx, ny)
    grid = (2 * _uniform(seed, salt, gi, gj) - 1).astype(np.float32)
    across = grid[:, lx] * (1 - tx) + grid[:, lx + 1] * tx  # each node row along x: the same sums, once a row
    top, bottom = across[ly], across[ly + 1]
    top *= (1 - ty)[:, None]  # in place, the same float32 sums as top * (1 - ty) + bottom * ty
    bottom *= ty[:, None]
    top += bottom
    return top


def _defects(seed: int, i0: int, j0: int, w: int, h: int) -> np.ndarray:
    """Voids (dark pits) and cracks (thin dark lines) as a multiplier."""
    # Drawn on a canvas that holds every defect whole: a line clipped at the canvas edge
    # would rasterise differently from the same line drawn unclipped.
    pad = 2 * _CRACK_CELL + _VOID_CELL
    canvas = np.full((h + 2 * pad, w + 2 * pad), 255, np.uint8)
    i0, j0 = i0 - pad, j0 - pad
    ci, cj = np.meshgrid(_cells(i0 + pad, i0 + pad + w, _VOID_CELL, 1), _cells(j0 + pad, j0 + pad + h, _VOID_CELL, 1))
    has = _uniform(seed, 10, ci, cj) < 0.3
    cells_i, cells_j = ci[has], cj[has]  # each void's three numbers, hashed for all voids at once
    voids = _uniform(seed, 11, np.repeat(cells_i[:, None], 3, 1), cells_j[:, None] + np.array([0, 7919, 15838]))
    for a, b, u in zip(cells_i.tolist(), cells_j.tolist(), voids.tolist(), strict=True):  # Python numbers: faster
        x = int(a * _VOID_CELL + u[0] * _VOID_CELL) - i0
        y = int(b * _VOID_CELL + u[1] * _VOID_CELL) - j0
        cv2.circle(canvas, (x, y), 1 + int(u[2] * 5), 25, -1, cv2.LINE_AA)
    ci, cj = np.meshgrid(
        _cells(i0 + pad, i0 + pad + w, _CRACK_CELL, 2), _cells(j0 + pad, j0 + pad + h, _CRACK_CELL, 2)
    )
    has = _uniform(seed, 20, ci, cj) < 0.3
    cells_i, cells_j = ci[has], cj[has]
    cracks = _uniform(seed, 21, np.repeat(cells_i[:, None], 12, 1), cells_j[:, None] * 64 + np.arange(12))
    for a, b, u in zip(cells_i.tolist(), cells_j.tolist(), cracks.tolist(), strict=True):
        x, y = a * _CRACK_CELL + u[0] * _CRACK_CELL, b * _CRACK_CELL + u[1] * _CRACK_CELL
        heading = u[2] * 2 * np.pi
        points = [(x, y)]
        for k in range(3 + int(u[3] * 3)):
            heading += (u[4 + k] - 0.5) * 1.2
            step = 10 + 25 * u[(8 + k) % 12]
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
            points.append((x, y))
        pts = np.round((np.array(points) - (i0, j0)) * 4).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 60, 1, cv2.LINE_AA, shift=2)
    shade = canvas[pad : pad + h, pad : pad + w].astype(np.float32)
    shade /= 255.0
    return shade


def film_texture(seed: int, i0: int, j0: int, w: int, h: int, style: FilmStyle = DEFAULT_STYLE) -> np.ndarray:
    """Fluorescence yield (about 0..1.3) of the unetched film over film pixels
    [i0, i0 + w) x [j0, j0 + h)."""
    if w <= 0 or h <= 0:
        raise ValueError(f"empty film region {w}x{h}")
    value = _grains(seed, i0, j0, w, h, style)
    slow, medium = (_smooth_noise(seed, 30 + k, c, i0, j0, w, h) for k, c in enumerate(_THICKNESS_CELLS))
    slow *= 0.2 * style.mottling  # in place: value * (1 + 0.2 m slow + 0.08 m medium), summed in that order
    slow += 1.0
    medium *= 0.08 * style.mottling
    slow += medium
    value *= slow
    value *= _defects(seed, i0, j0, w, h)
    return value


class EtchedFilm:
    """A film: its texture seed and style, and every line the laser engraved into it (design µm)."""

    def __init__(self, seed: int, segments: np.ndarray | None = None, style: FilmStyle = DEFAULT_STYLE) -> None:
        if not isinstance(style, FilmStyle):
            raise PufError(f"a film style must be a FilmStyle, got {style!r}")
        self.seed = int(seed)
        self.style = style
        self._segments = [] if segments is None else [np.asarray(segments, np.float64).reshape(-1, 5)]
        self._pending: list[tuple[float, float, float, float, float]] = []

    @property
    def segments(self) -> np.ndarray:
        """(N, 5) array of x0, y0, x1, y1 (µm) and power (mW)."""
        if self._pending:
            self._segments.append(np.array(self._pending, np.float64))
            self._pending = []
        if len(self._segments) != 1:
            self._segments = [np.concatenate(self._segments) if self._segments else np.zeros((0, 5))]
        return self._segments[0]

    def add_segment(self, x0: float, y0: float, x1: float, y1: float, power_mw: float) -> None:
        self._pending.append((x0, y0, x1, y1, power_mw))

    def render(self, i0: int, j0: int, w: int, h: int) -> np.ndarray:
        """Fluorescence yield over film pixels [i0, i0 + w) x [j0, j0 + h), etched lines included."""
        value = film_texture(self.seed, i0, j0, w, h, self.style)
        segs = self.segments
        if len(segs) == 0:
            return value
        x_lo, y_lo = i0 * FILM_PX_UM, j0 * FILM_PX_UM
        x_hi, y_hi = (i0 + w) * FILM_PX_UM, (j0 + h) * FILM_PX_UM
        reach = line_width_um(float(segs[:, 4].max()))
        near = (
            (np.minimum(segs[:, 0], segs[:, 2]) < x_hi + reach)
            & (np.maximum(segs[:, 0], segs[:, 2]) > x_lo - reach)
            & (np.minimum(segs[:, 1], segs[:, 3]) < y_hi + reach)
            & (np.maximum(segs[:, 1], segs[:, 3]) > y_lo - reach)
        )
        segs = segs[near]
        remaining = None  # the fluorescence the lines leave: 1 - darkness x coverage, the least of all powers
        for power in np.unique(segs[:, 4]):
            width_px = line_width_um(power) / FILM_PX_UM
            if width_px <= 0:
                continue
            mask = np.zeros((h, w), np.uint8)
            ends = np.round((segs[segs[:, 4] == power, :4] / FILM_PX_UM - (i0, j0, i0, j0)) * 16)
            lines = ends.astype(np.int64).reshape(-1, 2, 2).astype(np.int32)
            cv2.polylines(mask, list(lines), False, 255, max(1, int(round(width_px))), cv2.LINE_AA, shift=4)
            # every coverage 0-255 looked up, not computed a pixel at a time (the same float32 sums)
            left = np.float32(1.0) - np.float32(darkness(power) / 255.0) * np.arange(256, dtype=np.float32)
            lines_left = cv2.LUT(mask, left)
            remaining = lines_left if remaining is None else np.minimum(remaining, lines_left)
        if remaining is not None:
            np.multiply(value, remaining, out=value)
        return value

    def save(self, path: Path) -> None:
        path = Path(path)
        with replacing(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, seed=np.int64(self.seed), segments=self.segments,
                                style=np.array(self.style.to_json()))

    @classmethod
    def load(cls, path: Path) -> EtchedFilm:
        """The saved film; a file from before film styles is the default style."""
        try:
            with np.load(Path(path)) as data:
                style = FilmStyle.from_json(str(data["style"])) if "style" in data else DEFAULT_STYLE
                return cls(int(data["seed"]), data["segments"], style)
        except FileNotFoundError:
            raise PufError(f"no simulated film at {path}: etch it first (puf etch --sim)") from None
        except (OSError, ValueError, KeyError) as error:
            raise PufError(f"cannot read the simulated film {path}: {error}") from None
