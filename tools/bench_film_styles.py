"""Does the device's segmentation still find labels on films unlike the default, and what
does the capture-quality gate's sharpness measure on them?

    python tools/bench_film_styles.py                  # 8 fields and 120 handheld photos a film
    python tools/bench_film_styles.py --fields 2 --photos 24 --styles default coarse

For each film style (fabrication.sim.film.FilmStyle.parse text), one simulated batch:
  - microscope fields segmented as `puf segment` does (12 labels a field, glyph templates):
    whole labels found (corners within 10% of a side of the truth), missed, crops of no label;
  - handheld photos cut as the device cuts them (`trainer.simdata.segment_handheld`) with the
    field camera's usual faults, with a sharp camera (no motion blur, defocus 0.3-0.5 px)
    and a blurred one (defocus 3-4 px): found, missed, turned, moved;
  - `label.quality.sharpness` of every label found (median and 5th-95th percentiles), beside
    the verifier's limit (`edge_app.verify.CaptureLimits.min_sharpness`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

from edge_app.segment import segment
from edge_app.verify import CaptureLimits
from fabrication.calibration import StageCalibration
from fabrication.sim.field_camera import FieldCameraModel, capture_label
from fabrication.sim.film import FilmStyle
from fabrication.sim.microscope import SimulatedMicroscope
from trainer.simdata import SimSpec, device_templates, make_film, make_layout, segment_handheld

STYLES = ("default", "fine,contrast=0.5", "contrast=0.5", "coarse", "fine", "grain_um=9", "faceted", "mottled")
CAMERAS = {
    "sharp": FieldCameraModel(motion_blur_px=(0.0, 0.0), defocus_px=(0.3, 0.5)),
    "usual": FieldCameraModel(),
    "blurred": FieldCameraModel(motion_blur_px=(0.0, 0.0), defocus_px=(3.0, 4.0)),
}
CALIBRATION = StageCalibration((4000.0, -2500.0), 1.2)


def _spread(values: list[float]) -> dict:
    """Median, 5th-95th percentiles, and how many the verifier would call out of focus."""
    if not values:
        return {"median": None, "p5": None, "p95": None, "below_limit": 0}
    return {"median": round(float(np.median(values)), 4), "p5": round(float(np.percentile(values, 5)), 4),
            "p95": round(float(np.percentile(values, 95)), 4),
            "below_limit": int(np.sum(np.asarray(values) < CaptureLimits().min_sharpness))}


def _microscope(spec: SimSpec, layout, film, templates, fields: int) -> dict:
    tally = {"whole": 0, "found": 0, "missed": 0, "no_label": 0, "sharpness": []}
    label_px = layout.label_size_um / 0.6
    for field in range(fields):
        scope = SimulatedMicroscope(film, layout, CALIBRATION, seed=field)
        scope.move_to(*CALIBRATION.design_to_stage(*layout.field_center_um(field)))
        shot = scope.snap()
        result = segment(shot.image, label_px, k=layout.labels_per_field,
                         border_frac=layout.border_width_um / layout.label_size_um, templates=templates)
        claimed = set()
        for truth in shot.truth["labels"]:
            if not truth["whole"]:
                continue
            tally["whole"] += 1
            corners = np.asarray(truth["corners_px"])
            side = float(np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1).mean())
            near = [i for i, found in enumerate(result.labels)
                    if np.linalg.norm(found.corners - corners, axis=1).max() < 0.1 * side]
            if near:
                tally["found"] += 1
                claimed.add(near[0])
                tally["sharpness"].append(result.labels[near[0]].quality.sharpness)
            else:
                tally["missed"] += 1
        tally["no_label"] += len(result.labels) - len(claimed)
    tally["sharpness"] = _spread(tally["sharpness"])
    return tally


def _handheld(layout, film, templates, photos: int, camera: FieldCameraModel) -> dict:
    tally = {"photos": 0, "ok": 0, "missed": 0, "turned": 0, "moved": 0, "sharpness": []}
    for n in range(photos):
        field, slot = n % layout.fields_per_batch, (n * 5 + n // 7) % layout.labels_per_field
        image, truth = capture_label(film, layout, field, slot, 7000 + n, camera)
        tally["photos"] += 1
        _, outcome = segment_handheld(image, truth, layout, templates, 128)
        tally[outcome] += 1
        if outcome == "ok":  # the quality the device measures on the label it found
            expected = 0.5 * (250 + 364)
            found = segment(image, expected, k=1, size_tolerance=0.3, rotation_deg=None, templates=templates,
                            border_frac=layout.border_width_um / layout.label_size_um).labels[0]
            tally["sharpness"].append(found.quality.sharpness)
    tally["sharpness"] = _spread(tally["sharpness"])
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--styles", nargs="+", default=list(STYLES), help="film styles (preset and/or NAME=VALUE)")
    parser.add_argument("--fields", type=int, default=8, help="microscope fields a film (default 8)")
    parser.add_argument("--photos", type=int, default=120, help="handheld photos a film and camera (default 120)")
    parser.add_argument("--out", type=Path, default=Path("bench_film_styles.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    report = {"min_sharpness": CaptureLimits().min_sharpness, "films": {}}
    for text in args.styles:
        started = time.perf_counter()
        spec = replace(SimSpec("FILM", 7, 4, 2), film_style=text)
        layout = make_layout(spec)
        film = make_film(spec, layout)
        templates = device_templates(layout)
        entry = {"style": asdict(FilmStyle.parse(text)),
                 "microscope": _microscope(spec, layout, film, templates, min(args.fields, layout.fields_per_batch)),
                 "handheld": {name: _handheld(layout, film, templates, args.photos, camera)
                              for name, camera in CAMERAS.items()}}
        entry["seconds"] = round(time.perf_counter() - started, 1)
        report["films"][text] = entry
        m, hand = entry["microscope"], entry["handheld"]
        print(f"{text:>20}: fields found {m['found']}/{m['whole']} (no label {m['no_label']}), "
              f"sharpness {m['sharpness']['median']}; handheld " + "; ".join(
                  f"{name} ok {h['ok']}/{h['photos']} (missed {h['missed']}, turned {h['turned']}, moved {h['moved']}) "
                  f"sharpness {h['sharpness']['median']} [{h['sharpness']['p5']}, {h['sharpness']['p95']}] "
                  f"{h['sharpness']['below_limit']} below limit"
                  for name, h in hand.items()), flush=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"verifier's limit: sharpness >= {report['min_sharpness']}; figures written to {args.out}")


if __name__ == "__main__":
    main()
