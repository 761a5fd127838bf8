"""The factory side's charts: PNGs of the asked size with something drawn in them, the DET
curve's normal-deviate axis in the right places, matplotlib loaded only when a chart is drawn."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from trainer.charts import det_curve_png, histograms_png, loglog_png, percent, probit


def drawn(path, size: tuple[int, int]) -> np.ndarray:
    """The PNG at `path`, checked to be `size` (w, h) px with ink and colour in it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (size[1], size[0], 3)
    ink = np.any(image < 200, axis=2)
    assert 0.01 < ink.mean() < 0.5, f"{path}: {100 * ink.mean():.2f}% of the pixels drawn"
    saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1]
    assert np.count_nonzero(saturation > 120) > 200, f"{path}: no coloured line"
    return image


def test_probit_puts_known_rates_at_their_normal_deviates():
    rates = [0.5, 0.8413447460685429, 0.022750131948179195, 1e-3, 1e-6, 0.05]
    expected = [0.0, 1.0, -2.0, -3.090232306167813, -4.753424308822899, -1.6448536269514729]
    assert probit(rates) == pytest.approx(expected, abs=1e-9)
    assert probit(0.3)[0] == pytest.approx(-probit(0.7)[0])
    assert np.all(np.diff(probit(np.geomspace(1e-7, 0.5, 50))) > 0)


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, float("nan")])
def test_probit_refuses_a_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match="between 0 and 1"):
        probit([0.2, rate])


def test_percent_writes_small_rates_readably():
    assert [percent(r) for r in (1e-6, 1e-3, 0.2, 0.05)] == ["0.0001%", "0.1%", "20%", "5%"]


def test_det_curve_is_drawn(tmp_path):
    rng = np.random.default_rng(3)
    genuine, impostor = rng.normal(0.85, 0.06, 2000), rng.normal(0.4, 0.12, 50000)
    path = det_curve_png(genuine, impostor, tmp_path / "sub" / "det.png", {"FAR 1e-3": 0.77, "EER": 0.62})
    assert path == tmp_path / "sub" / "det.png"
    drawn(path, (900, 560))


def test_det_curve_marks_the_operating_point_with_the_interval_of_its_counts(tmp_path):
    """The interval is asked for each rate's errors and trials at the mark: impostors at or above
    the threshold, genuine scores below it; its bars are drawn in the mark's colour (red)."""
    genuine = np.array([0.5] * 3 + [0.9] * 97)
    impostor = np.array([0.8] * 2 + [0.3] * 998)
    asked = []

    def interval(errors: int, trials: int) -> tuple[float, float]:
        asked.append((errors, trials))
        return max(errors / trials / 3, 1e-5), min(3 * errors / trials + 3 / trials, 0.5)

    with_bars = drawn(det_curve_png(genuine, impostor, tmp_path / "bars.png", {"t": 0.7}, interval=interval),
                      (900, 560))
    without = drawn(det_curve_png(genuine, impostor, tmp_path / "plain.png", {"t": 0.7}), (900, 560))
    assert asked == [(2, 1000), (3, 100)]

    def red(image: np.ndarray) -> int:
        b, g, r = (image[..., i].astype(int) for i in range(3))
        return int(np.count_nonzero((r > 150) & (g < 90) & (b < 90)))

    assert red(with_bars) > red(without) + 50


def test_det_curve_of_perfectly_separated_scores_still_draws(tmp_path):
    """Every rate 0 but at the ends: the curve runs along the axes' lower edges."""
    drawn(det_curve_png(np.full(30, 0.9), np.full(40, 0.1), tmp_path / "det.png", size=(640, 480)), (640, 480))


def test_histograms_with_a_threshold_and_a_log_count(tmp_path):
    rng = np.random.default_rng(4)
    series = {"genuine": rng.normal(0.9, 0.03, 500), "counterfeit": rng.normal(0.45, 0.08, 500), "none": []}
    path = histograms_png(series, tmp_path / "scores.png", "scores", unit="", log_count=True,
                          marks={"threshold": 0.74}, xlabel="cosine score", size=(1000, 560),
                          colours={"genuine": "tab:green"})
    image = drawn(path, (1000, 560))
    green = np.all(np.abs(image.astype(int) - (44, 160, 44)) < 30, axis=2)  # tab:green, in BGR
    assert np.count_nonzero(green) > 100


def test_histograms_of_times_on_a_log_axis(tmp_path):
    rng = np.random.default_rng(5)
    times = {"model": rng.lognormal(0, 0.3, 800), "search": np.append(rng.lognormal(-2, 0.5, 800), [0.0, -1.0])}
    drawn(histograms_png(times, tmp_path / "times.png", "time a query", log_x=True), (900, 560))


def test_histograms_of_nothing_is_an_empty_chart(tmp_path):
    image = cv2.imread(str(histograms_png({"a": []}, tmp_path / "empty.png", "nothing")))
    assert image.shape == (560, 900, 3) and np.any(image < 200)


def test_loglog_lines(tmp_path):
    series = {"whole (ms)": [(1e4, 0.033), (1e5, 0.65), (1e6, 2.7), (1e7, 22.5)],
              "index (MB)": [(1e4, 3.0), (1e5, 28.0), (1e6, 268.0), (1e7, 2644.0)], "never measured": []}
    drawn(loglog_png(series, tmp_path / "scaling.png", "search", "enrolled vectors", "ms / MB"), (900, 560))


def test_matplotlib_is_loaded_only_to_draw():
    code = ("import sys; import trainer.charts, trainer.harness.demo_report, trainer.evaluation; "
            "print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
