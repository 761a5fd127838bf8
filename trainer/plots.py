"""Plain PNG charts drawn with OpenCV (the project carries no plotting library): a DET
curve and histograms, for `puf evaluate`'s report."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

_W, _H, _L, _R, _T, _B = 720, 520, 80, 24, 40, 64  # canvas and margins
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_COLOURS = [(200, 80, 30), (40, 140, 230), (60, 170, 60), (60, 60, 220)]


def _canvas(title: str) -> np.ndarray:
    image = np.full((_H, _W, 3), 255, np.uint8)
    cv2.putText(image, title, (_L, 26), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(image, (_L, _T), (_W - _R, _H - _B), (0, 0, 0), 1)
    return image


def _write(image: np.ndarray, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path


def det_curve_png(genuine: np.ndarray, impostor: np.ndarray, path: Path, marks: dict[str, float] | None = None,
                  title: str = "DET: false rejects vs false accepts") -> Path:
    """False reject rate against false accept rate, both on log axes (1e-6 .. 1)."""
    genuine = np.sort(np.asarray(genuine, np.float64))
    impostor = np.sort(np.asarray(impostor, np.float64))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    frr = np.searchsorted(genuine, thresholds, side="left") / max(len(genuine), 1)
    far = 1.0 - np.searchsorted(impostor, thresholds, side="left") / max(len(impostor), 1)
    lo = -6.0
    image = _canvas(title)

    def xy(a: float, r: float) -> tuple[int, int]:
        fx = (max(math.log10(max(a, 1e-12)), lo) - lo) / -lo
        fy = (max(math.log10(max(r, 1e-12)), lo) - lo) / -lo
        return int(_L + fx * (_W - _L - _R)), int(_H - _B - fy * (_H - _T - _B))

    for e in range(int(lo), 1):
        x, _ = xy(10.0**e, 1)
        _, y = xy(1, 10.0**e)
        cv2.line(image, (x, _T), (x, _H - _B), (225, 225, 225), 1)
        cv2.line(image, (_L, y), (_W - _R, y), (225, 225, 225), 1)
        cv2.putText(image, f"1e{e}", (x - 16, _H - _B + 18), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, f"1e{e}", (8, y + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "false accept rate", (_W // 2 - 60, _H - 18), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "false reject", (8, _T - 8), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    points = np.array([xy(a, r) for a, r in zip(far, frr, strict=True)], np.int32)
    cv2.polylines(image, [points], False, _COLOURS[0], 2, cv2.LINE_AA)
    for i, (name, threshold) in enumerate((marks or {}).items()):
        a = float(np.mean(impostor >= threshold))
        r = float(np.mean(genuine < threshold))
        centre = xy(a, r)
        cv2.circle(image, centre, 5, _COLOURS[(i + 1) % 4], -1, cv2.LINE_AA)
        cv2.putText(image, f"{name}: t={threshold:.3f} FAR {a:.1e} FRR {r:.1e}", (_L + 10, _T + 20 + 18 * i),
                    _FONT, 0.45, _COLOURS[(i + 1) % 4], 1, cv2.LINE_AA)
    return _write(image, path)


def histograms_png(series: dict[str, np.ndarray], path: Path, title: str, unit: str = "ms",
                   bins: int = 60, log_count: bool = False, log_x: bool = False,
                   marks: dict[str, float] | None = None) -> Path:
    """Overlaid histograms of several series on one axis, linear or (`log_x`, for times that
    span decades) logarithmic; `marks` draws labelled vertical lines (a threshold)."""
    values = [np.asarray(v, np.float64) for v in series.values() if len(v)]
    if log_x:
        values = [v[v > 0] for v in values]
    image = _canvas(title)
    if not any(len(v) for v in values):
        return _write(image, path)
    values = [v for v in values if len(v)]
    lo = min(float(v.min()) for v in values)
    hi = max(float(np.percentile(v, 99.5)) for v in values)
    hi = hi if hi > lo else lo * 10 if log_x else lo + 1.0
    edges = np.geomspace(lo, hi, bins + 1) if log_x else np.linspace(lo, hi, bins + 1)
    counts = [np.histogram(np.clip(v, lo, hi), edges)[0].astype(np.float64) for v in values]
    scale = [np.log10(c + 1) if log_count else c for c in counts]
    top = max(float(s.max()) for s in scale) or 1.0
    width = (_W - _L - _R) / bins

    def x_of(value: float) -> int:
        f = math.log(value / lo) / math.log(hi / lo) if log_x else (value - lo) / (hi - lo)
        return int(_L + f * (_W - _L - _R))

    for name, threshold in (marks or {}).items():
        if lo <= threshold <= hi:
            x = x_of(threshold)
            for y in range(_T, _H - _B, 8):
                cv2.line(image, (x, y), (x, min(y + 4, _H - _B)), (90, 90, 90), 1)
            cv2.putText(image, name, (x + 4, _H - _B - 8), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (name, s) in enumerate(zip(series, scale, strict=False)):
        colour = _COLOURS[i % 4]
        points = [(int(_L + (b + 0.5) * width), int(_H - _B - s[b] / top * (_H - _T - _B - 10))) for b in range(bins)]
        cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
        v = values[i]
        cv2.putText(image, f"{name}: median {np.median(v):.3g} {unit}, p99 {np.percentile(v, 99):.3g}",
                    (_L + 10, _T + 20 + 18 * i), _FONT, 0.45, colour, 1, cv2.LINE_AA)
    if log_x:
        ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    else:
        ticks = [lo + f * (hi - lo) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    for tick in ticks:
        x = x_of(tick)
        cv2.line(image, (x, _H - _B), (x, _H - _B + 4), (0, 0, 0), 1)
        cv2.putText(image, f"{tick:.3g}", (x - 12, _H - _B + 18), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    axis = unit + (", log scale" if log_x else "") + (" (count on a log scale)" if log_count else "")
    cv2.putText(image, axis, (_W // 2 - 60, _H - 18), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return _write(image, path)


def loglog_png(series: dict[str, list[tuple[float, float]]], path: Path, title: str, xlabel: str,
               ylabel: str) -> Path:
    """Lines on log-log axes (x: decades of enrolled vectors)."""
    points = [p for s in series.values() for p in s if p[1] > 0]
    image = _canvas(title)
    if not points:
        return _write(image, path)
    x0, x1 = math.floor(math.log10(min(p[0] for p in points))), math.ceil(math.log10(max(p[0] for p in points)))
    y0, y1 = math.floor(math.log10(min(p[1] for p in points))), math.ceil(math.log10(max(p[1] for p in points)))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)

    def xy(x: float, y: float) -> tuple[int, int]:
        fx = (math.log10(x) - x0) / (x1 - x0)
        fy = (math.log10(y) - y0) / (y1 - y0)
        return int(_L + fx * (_W - _L - _R)), int(_H - _B - fy * (_H - _T - _B))

    for e in range(x0, x1 + 1):
        x, _ = xy(10.0**e, 10.0**y0)
        cv2.line(image, (x, _T), (x, _H - _B), (225, 225, 225), 1)
        cv2.putText(image, f"1e{e}", (x - 14, _H - _B + 18), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for e in range(y0, y1 + 1):
        _, y = xy(10.0**x0, 10.0**e)
        cv2.line(image, (_L, y), (_W - _R, y), (225, 225, 225), 1)
        cv2.putText(image, f"1e{e}", (8, y + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, xlabel, (_W // 2 - 80, _H - 18), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, ylabel, (8, _T - 8), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, s) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = np.array([xy(x, y) for x, y in s if y > 0], np.int32)
        if len(pts):
            cv2.polylines(image, [pts], False, colour, 2, cv2.LINE_AA)
            for p in pts:
                cv2.circle(image, tuple(int(v) for v in p), 4, colour, -1, cv2.LINE_AA)
        cv2.putText(image, name, (_L + 10, _T + 20 + 18 * i), _FONT, 0.45, colour, 1, cv2.LINE_AA)
    return _write(image, path)
