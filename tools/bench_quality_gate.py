"""Bench the capture-quality gate on films of several grain sizes: how many sharp handheld
photos it calls unreadable, and how many blurred ones it still lets through.

Sharp photos are the simulated handheld camera's (`fabrication.sim.field_camera`), at its
own magnification range and hand shake; blurred ones are the same photos with Gaussian blur
of 1.3% of the label side (4 px at 300 px) or a smear of 5% of it at a random angle. Each
photo goes through verify's segmentation with the label size found in the photo and
verify's capture limits (`edge_app.verify.capture_problem`); no model is needed.

Films (`fabrication.sim.film.FilmStyle.parse` text): the simulator's default, a fine film
(1 um grains), 3 um grains at half contrast and a coarse film (9 um grains, half contrast),
each etched with the same layout (`trainer.simdata.make_film`).

    python tools/bench_quality_gate.py --photos 120
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import cv2
import numpy as np

from edge_app.label_size import estimate_label_px
from edge_app.segment import segment
from edge_app.verify import CaptureLimits, capture_problem
from fabrication.blur import motion_blur
from fabrication.sim.field_camera import capture_label

FILMS = ("default", "fine", "contrast=0.5", "coarse")


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
    parser.add_argument("--films", nargs="+", default=list(FILMS),
                        help=f"film styles, preset and/or NAME=VALUE (default {' '.join(FILMS)})")
    args = parser.parse_args(argv)
    from trainer.simdata import SimSpec, make_film, make_layout

    spec = SimSpec("Q1", 5, 1, 1)
    layout = make_layout(spec)
    limits = CaptureLimits()
    print(f"{'film':<24}{'photos':>7}{'sharp unreadable':>18}{'sharpness p1-p50':>18}"
          f"{'gaussian passed':>17}{'smear passed':>14}")
    for name in args.films:
        scene = make_film(replace(spec, film_style=name), layout)
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
            smear_passed += readable(motion_blur(image, int(0.05 * side) | 1, rng.uniform(0, 180)), limits)[0]
        p1, p50 = np.nanpercentile(sharpness, [1, 50])
        total = args.photos
        print(f"{name:<24}{total:>7}{unreadable / total:>17.1%} {p1:>9.2f}-{p50:<7.2f}"
              f"{blur_passed / total:>16.1%}{smear_passed / total:>14.1%}")
    print(f"limits: sharpness >= {limits.min_sharpness}, border contrast >= {limits.min_border_contrast}, "
          f"film level >= {limits.min_exposure}, saturated <= {limits.max_clipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
