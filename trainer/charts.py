"""The trainer's charts (`puf evaluate`, `puf bench`, `puf demo`), drawn with matplotlib
on its Agg backend: values and labels on both axes, and the DET curve on normal-deviate
axes, where a detector's rates lie on nearly straight lines and rates of 1e-6 and 40% share
one chart.

matplotlib comes with the `factory` extra and is imported inside the functions that draw,
so importing this module costs nothing; the device never draws a chart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

SIZE = (900, 560)  # px of every chart unless asked otherwise
_DPI = 100
# The rates a DET axis may show, and its top: past 50% a detector is worse than a coin.
_DET_TICKS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.02, 0.05, 0.1, 0.2, 0.4)
_DET_TOP = 0.5
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def probit(rates: float | Iterable[float]) -> np.ndarray:
    """The normal deviate of each rate (the inverse of the standard normal CDF): where a
    rate sits on a DET axis. 0.5 -> 0, 0.8413 -> 1, 0.001 -> -3.09. Rates must lie in (0, 1)."""
    values = np.atleast_1d(np.asarray(rates, np.float64))
    if not np.all((values > 0) & (values < 1)):
        raise ValueError("probit takes rates strictly between 0 and 1")
    unit = NormalDist()
    return np.array([unit.inv_cdf(float(v)) for v in values.ravel()]).reshape(values.shape)


def percent(rate: float) -> str:
    """A rate as a percentage with the digits it needs: 1e-06 -> '0.0001%', 0.2 -> '20%'."""
    return f"{100 * rate:.3g}%"


def _figure(size: tuple[int, int], title: str) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=11)
    axes.grid(True, color="0.9", linewidth=0.8)
    axes.set_axisbelow(True)
    return figure, axes


def _log_axis(axis: Axis) -> None:
    """A logarithmic axis (set its data first) written in plain numbers: at 1, 2 and 5 of
    every decade, or at the decades alone when it spans more than three."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else math.inf
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI, format="png")
    return path


def _det_rates(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FAR, FRR) at every score seen: a genuine score below the threshold is a
    false reject, an impostor score at or above it a false accept."""
    genuine = np.sort(np.asarray(genuine, np.float64))
    impostor = np.sort(np.asarray(impostor, np.float64))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    frr = np.searchsorted(genuine, thresholds, side="left") / max(len(genuine), 1)
    far = 1.0 - np.searchsorted(impostor, thresholds, side="left") / max(len(impostor), 1)
    return thresholds, far, frr


def det_curve_png(genuine: np.ndarray, impostor: np.ndarray, path: Path, marks: dict[str, float] | None = None,
                  title: str = "DET: false rejects vs false accepts", size: tuple[int, int] = SIZE,
                  interval: Callable[[int, int], tuple[float, float]] | None = None) -> Path:
    """False reject rate against false accept rate on normal-deviate axes, from the finest
    rate the comparisons resolve (a rate of 0 is drawn on the axis' lower edge) to 50%;
    `marks` are thresholds shown as points with their rates. `interval(errors, trials)` (the
    trainer's exact `rate_bounds`, passed in: this module never imports the trainer) adds each
    mark's confidence interval as error bars on both rates: a point measured from few errors
    is a range, not a point."""
    genuine = np.asarray(genuine, np.float64)
    impostor = np.asarray(impostor, np.float64)
    _, far, frr = _det_rates(genuine, impostor)
    finest = 1.0 / max(len(genuine), len(impostor), 1)
    floor = max(10.0 ** math.floor(math.log10(finest)), _DET_TICKS[0])
    lo, hi = float(probit(floor)[0]), float(probit(_DET_TOP)[0])

    def place(rates: np.ndarray) -> np.ndarray:
        return probit(np.clip(rates, floor, _DET_TOP))

    figure, axes = _figure(size, title)
    ticks = [t for t in _DET_TICKS if floor <= t <= _DET_TOP]
    for set_ticks, set_labels, set_lim in ((axes.set_xticks, axes.set_xticklabels, axes.set_xlim),
                                           (axes.set_yticks, axes.set_yticklabels, axes.set_ylim)):
        set_ticks(probit(ticks))
        set_labels([percent(t) for t in ticks])
        set_lim(lo - 0.08 * (hi - lo), hi)  # rates of 0 sit on `lo`, just inside the frame
    axes.plot([lo, hi], [lo, hi], color="0.6", linestyle=":", linewidth=1, label="FAR = FRR")
    axes.plot(place(far), place(frr), color="tab:blue", linewidth=2,
              label=f"{len(genuine):,} genuine, {len(impostor):,} impostor comparisons")
    for (name, threshold), colour, marker in zip((marks or {}).items(), ("tab:red", "tab:green", "tab:purple"),
                                                 "oDs", strict=False):  # open marks: both seen where they meet
        accepted, rejected = int(np.sum(impostor >= threshold)), int(np.sum(genuine < threshold))
        a, r = accepted / max(len(impostor), 1), rejected / max(len(genuine), 1)
        x, y = place(np.array([a])), place(np.array([r]))
        label = f"{name}: threshold {threshold:.3f}, FAR {percent(a)}, FRR {percent(r)}"
        if interval is not None:
            (a_lo, a_hi), (r_lo, r_hi) = interval(accepted, len(impostor)), interval(rejected, len(genuine))
            axes.errorbar(x, y, xerr=[x - place(np.array([a_lo])), place(np.array([a_hi])) - x],
                          yerr=[y - place(np.array([r_lo])), place(np.array([r_hi])) - y],
                          color=colour, capsize=4, linewidth=1.2)
            label += f" (95% intervals: FAR {percent(a_lo)}-{percent(a_hi)}, FRR {percent(r_lo)}-{percent(r_hi)})"
        axes.plot(x, y, marker, color=colour, markersize=10, fillstyle="none", markeredgewidth=2, label=label)
    axes.set_xlabel(f"false accept rate (normal-deviate scale; 0 drawn at {percent(floor)})")
    axes.set_ylabel(f"false reject rate (0 drawn at {percent(floor)})")
    axes.legend(loc="upper right", fontsize=9)
    return _save(figure, path)


def histograms_png(series: Mapping[str, Sequence[float] | np.ndarray], path: Path, title: str, unit: str = "ms",
                   bins: int = 60, log_count: bool = False, log_x: bool = False,
                   marks: dict[str, float] | None = None, xlabel: str | None = None,
                   colours: dict[str, str] | None = None, size: tuple[int, int] = SIZE) -> Path:
    """Overlaid step histograms of several series on one axis, linear or (`log_x`, for
    times that span decades) logarithmic, counts linear or (`log_count`, so a few
    counterfeits stay visible beside a tall genuine peak) logarithmic; values past the 99.5th
    percentile fall in the last bin. `marks` draws labelled vertical lines (a threshold)."""
    named = {name: np.asarray(v, np.float64) for name, v in series.items() if len(v)}
    if log_x:
        named = {name: v[v > 0] for name, v in named.items() if np.any(v > 0)}
    figure, axes = _figure(size, title)
    axes.set_xlabel(xlabel or unit)
    axes.set_ylabel("count")
    if not named:
        axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes)
        return _save(figure, path)
    inside = [m for m in (marks or {}).values() if not log_x or m > 0]
    lo = min([float(v.min()) for v in named.values()] + inside)
    hi = max([float(np.percentile(v, 99.5)) for v in named.values()] + inside)
    hi = hi if hi > lo else lo * 10 if log_x else lo + 1.0
    edges = np.geomspace(lo, hi, bins + 1) if log_x else np.linspace(lo, hi, bins + 1)
    suffix = f" {unit}" if unit else ""
    for i, (name, values) in enumerate(named.items()):
        counts = np.histogram(np.clip(values, lo, hi), edges)[0]
        axes.stairs(counts, edges, linewidth=2, color=(colours or {}).get(name, _PALETTE[i % len(_PALETTE)]),
                    label=f"{name}: {len(values):,}, median {np.median(values):.3g}{suffix}, "
                          f"p99 {np.percentile(values, 99):.3g}{suffix}")
    for name, value in (marks or {}).items():
        if lo <= value <= hi:
            axes.axvline(value, color="black", linestyle="--", linewidth=1.2, label=f"{name} {value:.4g}{suffix}")
    axes.set_xlim(lo, hi)
    if log_x:
        axes.set_xscale("log")
        _log_axis(axes.xaxis)
    if log_count:
        axes.set_yscale("log")
        axes.set_ylim(bottom=0.7)
        _log_axis(axes.yaxis)
    else:
        axes.set_ylim(bottom=0)
    figure.legend(loc="outside lower center", fontsize=9)  # below the axes: never over a bar
    return _save(figure, path)


def loglog_png(series: dict[str, list[tuple[float, float]]], path: Path, title: str, xlabel: str,
               ylabel: str, size: tuple[int, int] = SIZE, log_y: bool = True) -> Path:
    """Lines with their points on log-log axes (x: decades of enrolled vectors), or a linear
    y axis (`log_y=False`, for a rate such as recall that spans no decades). One unit a chart:
    series of different units belong on charts of their own."""
    figure, axes = _figure(size, title)
    for name, points in series.items():
        kept = [(x, y) for x, y in points if x > 0 and (y > 0 or not log_y)]
        if kept:
            axes.plot(*zip(*kept, strict=True), marker="o", linewidth=2, label=name)
    axes.set_xscale("log")
    _log_axis(axes.xaxis)
    if log_y:
        axes.set_yscale("log")
        _log_axis(axes.yaxis)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if axes.lines:
        axes.legend(loc="best", fontsize=9)
    return _save(figure, path)
