"""The simulated perovskite quantum-dot film: a deterministic texture of (seed, x, y).

A spin-coated CsPbBr3 film is a mosaic of crystallites of varying size and brightness,
separated by darker grain boundaries, with voids and cracks, on top of a slow variation
in thickness. The texture here is a pure function of the film seed and the film
coordinates (sampled on a fixed grid of FILM_PX_UM), so the same spot renders the same
every time it is photographed, and spots far apart are independent.

What the laser engraved is kept beside the seed as line segments; rendering a region
darkens the texture under them (see `fabrication.sim.laser` for width and darkness).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_app.errors import PufError
from fabrication.laser_response import darkness, line_width_um

FILM_PX_UM = 0.5  # the film's sampling grid

_GRAIN_CELL = 6  # film px: one crystallite seed per cell (about 3 µm grains)
_VOID_CELL = 40
_CRACK_CELL = 160
_THICKNESS_CELLS = (240, 60)  # slow and medium thickness variation
_MASK64 = (1 << 64) - 1


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


def _grains(seed: int, i0: int, j0: int, w: int, h: int) -> np.ndarray:
    """Crystallite mosaic: Voronoi cells of jittered seeds, domed and edged darker."""
    pad = 3 * _GRAIN_CELL
    ci = _cells(i0 - pad, i0 + w + pad, _GRAIN_CELL, 0)
    cj = _cells(j0 - pad, j0 + h + pad, _GRAIN_CELL, 0)
    gi, gj = np.meshgrid(ci, cj)
    keep = _uniform(seed, 1, gi, gj) < 0.8  # missing seeds make larger grains
    sx = (gi * _GRAIN_CELL + (_uniform(seed, 2, gi, gj) * _GRAIN_CELL).astype(int))[keep]
    sy = (gj * _GRAIN_CELL + (_uniform(seed, 3, gi, gj) * _GRAIN_CELL).astype(int))[keep]
    brightness = 0.3 + 0.7 * _uniform(seed, 4, gi, gj)[keep] ** 0.6
    ox, oy = ci[0] * _GRAIN_CELL, cj[0] * _GRAIN_CELL
    size = ((cj[-1] + 1) * _GRAIN_CELL - oy, (ci[-1] + 1) * _GRAIN_CELL - ox)
    seeds = np.full(size, 255, np.uint8)
    seeds[sy - oy, sx - ox] = 0
    dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(labels.max() + 1, np.float32)
    lut[labels[sy - oy, sx - ox]] = brightness
    # crop one pixel wider than asked so grain edges are known on the region's border
    rows, cols = slice(j0 - oy, j0 - oy + h + 1), slice(i0 - ox, i0 - ox + w + 1)
    labels, dist = labels[rows, cols], dist[rows, cols]
    value = np.take(lut, labels[:-1, :-1]) * (1.0 - 0.05 * np.minimum(dist[:-1, :-1], 6.0))
    edges = (labels[:-1, 1:] != labels[:-1, :-1]) | (labels[1:, :-1] != labels[:-1, :-1])
    return value * np.where(edges, np.float32(0.6), np.float32(1.0))


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
    top = grid[ly][:, lx] * (1 - tx) + grid[ly][:, lx + 1] * tx
    bottom = grid[ly + 1][:, lx] * (1 - tx) + grid[ly + 1][:, lx + 1] * tx
    return top * (1 - ty)[:, None] + bottom * ty[:, None]


def _defects(seed: int, i0: int, j0: int, w: int, h: int) -> np.ndarray:
    """Voids (dark pits) and cracks (thin dark lines) as a multiplier."""
    # Drawn on a canvas that holds every defect whole: a line clipped at the canvas edge
    # would rasterise differently from the same line drawn unclipped.
    pad = 2 * _CRACK_CELL + _VOID_CELL
    canvas = np.full((h + 2 * pad, w + 2 * pad), 255, np.uint8)
    i0, j0 = i0 - pad, j0 - pad
    ci, cj = np.meshgrid(_cells(i0 + pad, i0 + pad + w, _VOID_CELL, 1), _cells(j0 + pad, j0 + pad + h, _VOID_CELL, 1))
    has = _uniform(seed, 10, ci, cj) < 0.3
    for a, b in zip(ci[has], cj[has], strict=True):
        u = _uniform(seed, 11, np.array([a, a, a]), np.array([b, b + 7919, b + 15838]))
        x = int(a * _VOID_CELL + u[0] * _VOID_CELL) - i0
        y = int(b * _VOID_CELL + u[1] * _VOID_CELL) - j0
        cv2.circle(canvas, (x, y), 1 + int(u[2] * 5), 25, -1, cv2.LINE_AA)
    ci, cj = np.meshgrid(
        _cells(i0 + pad, i0 + pad + w, _CRACK_CELL, 2), _cells(j0 + pad, j0 + pad + h, _CRACK_CELL, 2)
    )
    has = _uniform(seed, 20, ci, cj) < 0.3
    for a, b in zip(ci[has], cj[has], strict=True):
        u = _uniform(seed, 21, np.full(12, a), b * 64 + np.arange(12))
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
    return canvas[pad : pad + h, pad : pad + w].astype(np.float32) / 255.0


def film_texture(seed: int, i0: int, j0: int, w: int, h: int) -> np.ndarray:
    """Fluorescence yield (about 0..1.3) of the unetched film over film pixels
    [i0, i0 + w) x [j0, j0 + h)."""
    if w <= 0 or h <= 0:
        raise ValueError(f"empty film region {w}x{h}")
    value = _grains(seed, i0, j0, w, h)
    slow, medium = (_smooth_noise(seed, 30 + k, c, i0, j0, w, h) for k, c in enumerate(_THICKNESS_CELLS))
    value *= 1.0 + 0.2 * slow + 0.08 * medium
    value *= _defects(seed, i0, j0, w, h)
    return value


class EtchedFilm:
    """A film: its texture seed and every line the laser engraved into it (design µm)."""

    def __init__(self, seed: int, segments: np.ndarray | None = None) -> None:
        self.seed = int(seed)
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
        value = film_texture(self.seed, i0, j0, w, h)
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
        remaining = np.ones((h, w), np.float32)
        for power in np.unique(segs[:, 4]):
            width_px = line_width_um(power) / FILM_PX_UM
            if width_px <= 0:
                continue
            mask = np.zeros((h, w), np.uint8)
            ends = np.round((segs[segs[:, 4] == power, :4] / FILM_PX_UM - (i0, j0, i0, j0)) * 16)
            lines = ends.astype(np.int64).reshape(-1, 2, 2).astype(np.int32)
            cv2.polylines(mask, list(lines), False, 255, max(1, int(round(width_px))), cv2.LINE_AA, shift=4)
            removed = np.float32(darkness(power) / 255.0) * mask.astype(np.float32)
            remaining = np.minimum(remaining, np.float32(1.0) - removed)
        return value * remaining

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, seed=np.int64(self.seed), segments=self.segments)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EtchedFilm:
        try:
            with np.load(Path(path)) as data:
                return cls(int(data["seed"]), data["segments"])
        except FileNotFoundError:
            raise PufError(f"no simulated film at {path}: etch it first (puf etch --sim)") from None
        except (OSError, ValueError, KeyError) as error:
            raise PufError(f"cannot read the simulated film {path}: {error}") from None
