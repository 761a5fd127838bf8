"""Bench the capture-quality gate on films of several grain sizes: how many sharp handheld
photos it calls unreadable, and how many blurred ones it still lets through.

Sharp photos are the simulated handheld camera's (`fabrication.sim.field_camera`), at its
own magnification range and hand shake; blurred ones are the same photos with Gaussian blur
of 1.3% of the label side (4 px at 300 px) or a smear of 5% of it at a random angle. Each
photo goes through verify's segmentation with the label size found in the photo and
verify's capture limits (`edge_app.verify.capture_problem`); no model is needed.

Films: the simulator's default, and films whose grains are N um across at half its grain
contrast. Until `fabrication.sim.film` has film styles, those are emulated here by
resampling the default texture (the etched lines kept at their true size).

    python tools/bench_quality_gate.py --photos 120
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.label_size import estimate_label_px  # noqa: E402
from edge_app.segment import segment  # noqa: E402
from edge_app.verify import CaptureLimits, capture_problem  # noqa: E402
from fabrication.sim.field_camera import capture_label  # noqa: E402
from fabrication.sim.film import EtchedFilm, film_texture  # noqa: E402

DEFAULT_GRAIN_UM = 3.0  # the default film's grains (fabrication.sim.film._GRAIN_CELL)


class ResampledFilm:
    """An etched film whose texture has grains `grain_um` across and `contrast` times the
    default's contrast; the etched lines are the film's own."""

    def __init__(self, film: EtchedFilm, grain_um: float, contrast: float) -> None:
        self.film, self.zoom, self.contrast = film, grain_um / DEFAULT_GRAIN_UM, contrast

    def render(self, i0: int, j0: int, w: int, h: int) -> np.ndarray:
        etched = self.film.render(i0, j0, w, h)
        lines = etched / np.maximum(film_texture(self.film.seed, i0, j0, w, h), 1e-6)
        sw, sh = max(2, round(w / self.zoom)), max(2, round(h / self.zoom))
        texture = film_texture(self.film.seed, round(i0 / self.zoom), round(j0 / self.zoom), sw, sh)
        texture = cv2.resize(texture, (w, h), interpolation=cv2.INTER_LINEAR if self.zoom > 1 else cv2.INTER_AREA)
        mean = float(texture.mean())
        return (mean + self.contrast * (texture - mean)) * np.clip(lines, 0, 1)


def motion(image: np.ndarray, length: int, angle: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1),
                            (length, length))
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def readable(image: np.ndarray, limits: CaptureLimits) -> tuple[bool, float]:
    """Whether verify's gate reads the photo's label, and its sharpness (nan when none is found)."""
    label_px = estimate_label_px(image)
    if label_px is None:
        return False, float("nan")
    labels = segment(image, label_px, k=1, size_tolerance=limits.size_tolerance, rotation_deg=None).labels
    if not labels:
        return False, float("nan")
    return capture_problem(labels[0].quality, limits) is None, labels[0].quality.sharpness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=120, help="sharp photos per film (default 120)")
    parser.add_argument("--grains-um", type=float, nargs="*", default=[1.0, 3.0, 9.0],
                        help="grain sizes of the other films, um (default 1 3 9)")
    parser.add_argument("--contrast", type=float, default=0.5, help="their grain contrast over the default's")
    args = parser.parse_args(argv)
    from trainer.simdata import SimSpec, make_film, make_layout

    spec = SimSpec("Q1", 5, 1, 1)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    limits = CaptureLimits()
    films = [("default", film)] + [(f"{g:g} um, contrast x{args.contrast:g}", ResampledFilm(film, g, args.contrast))
                                   for g in args.grains_um]
    print(f"{'film':<24}{'photos':>7}{'sharp unreadable':>18}{'sharpness p1-p50':>18}"
          f"{'gaussian passed':>17}{'smear passed':>14}")
    for name, scene in films:
        rng = np.random.default_rng(0)
        unreadable = blur_passed = smear_passed = 0
        sharpness = []
        for n in range(args.photos):
            image, truth = capture_label(scene, layout, 0, n % layout.labels_per_field, 1000 + n)
            corners = np.array(truth["corners_px"])
            side = float(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).mean())
            ok, value = readable(image, limits)
            unreadable += not ok
            sharpness.append(value)
            blur_passed += readable(cv2.GaussianBlur(image, (0, 0), 0.013 * side), limits)[0]
            smear_passed += readable(motion(image, int(0.05 * side) | 1, rng.uniform(0, 180)), limits)[0]
        p1, p50 = np.nanpercentile(sharpness, [1, 50])
        total = args.photos
        print(f"{name:<24}{total:>7}{unreadable / total:>17.1%} {p1:>9.2f}-{p50:<7.2f}"
              f"{blur_passed / total:>16.1%}{smear_passed / total:>14.1%}")
    print(f"limits: sharpness >= {limits.min_sharpness}, border contrast >= {limits.min_border_contrast}, "
          f"film level >= {limits.min_exposure}, saturated <= {limits.max_clipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
