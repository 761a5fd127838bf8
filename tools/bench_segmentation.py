"""Segmentation side by side: the paper's method and ours, on simulated fields with truth.

    python tools/bench_segmentation.py            # 200 fields (a paper batch), 400 handheld photos
    python tools/bench_segmentation.py --quick    # 24 fields, 60 photos
    python tools/bench_segmentation.py --baseline /tmp/main   # and another checkout's fast method beside ours

Per method, in one run on the same fields (OpenCV on --threads threads, 2 unless told):
  - time per 1920x1440 field (median over every field, each segmented --repeat times by
    one method and then by the other);
  - labels lying whole in a field found with IoU >= 0.9 against the truth; labels cut by
    the field's edge that were cropped anyway; crops that match no label;
  - label ids from slot assignment (with and without glyph templates): right, wrong,
    withheld because the field's position was ambiguous;
  - orientation: factory crops in design orientation; handheld photos (any rotation)
    brought to canonical orientation by the glyph: right, ambiguous, wrong.

With `--baseline CHECKOUT` (another checkout of the project, such as a `git worktree` of main)
that checkout's `edge_app/segment.py` is timed too, as a third method ("fast_baseline"), and every
label it finds in every field and handheld photo must be ours bit for bit (corners, crop, quality,
glyph reading): the run exits with status 1, naming the first difference, if one is not.

Prints a table and writes the figures as JSON (--out). A fraction of the fields are shot
with a slipping stage (--slip) so that labels are cut by the edge and the field's position
is in doubt. The paper reports about 200 ms a field (2,400 labels in about 40 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from edge_app import segment as this_segment
from edge_app.layout import BatchLayout
from edge_app.orientation import render_templates
from edge_app.segment import segment
from fabrication.calibration import StageCalibration
from fabrication.patterns import pattern_by_name, pattern_names
from fabrication.segmentation.slots import assign_slots
from fabrication.sim.field_camera import capture_label
from fabrication.sim.film import EtchedFilm
from fabrication.sim.laser import engrave_layout
from fabrication.sim.microscope import MicroscopeModel, SimulatedMicroscope

CALIBRATION = StageCalibration((5000.0, 3000.0), 0.0, 1.0)
_world: dict = {}


def make_layout(field_cols: int, field_rows: int) -> BatchLayout:
    names = pattern_names()
    rng = np.random.default_rng(11)
    count = 12 * field_cols * field_rows
    return BatchLayout("BENCH", tuple(names[i] for i in rng.integers(0, len(names), count)),
                       field_cols=field_cols, field_rows=field_rows)


def load_baseline(checkout: Path) -> ModuleType:
    """Another checkout's segmentation module, beside ours (its own imports are ours: the
    timed fast method reaches only `edge_app.label_crop` and `edge_app.errors` of them)."""
    path = checkout / "edge_app" / "segment.py"
    spec = importlib.util.spec_from_file_location("baseline_segment", path) if path.is_file() else None
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline {checkout}: no edge_app/segment.py there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def label_difference(ours, theirs) -> str | None:
    """The first way two segmentation results' labels differ, or None when they are the same
    bit for bit."""
    if len(ours.labels) != len(theirs.labels):
        return f"{len(ours.labels)} labels, the baseline {len(theirs.labels)}"
    for i, (a, b) in enumerate(zip(ours.labels, theirs.labels, strict=True)):
        for what in ("corners", "crop"):
            if not np.array_equal(getattr(a, what), getattr(b, what)):
                return f"label {i}: {what} differ"
        if a.quality != b.quality or a.orientation != b.orientation or a.glyph != b.glyph:
            return f"label {i}: quality or orientation differ ({a.quality} / {b.quality})"
    return None


def timed(module: ModuleType, image: np.ndarray, label_px: float, method: str) -> tuple[float, float]:
    """One segmentation's wall-clock and CPU time (every thread's: what a loaded machine's waits
    for a core do not inflate), ms."""
    started = time.process_time()
    elapsed = module.segment(image, label_px, method=method).elapsed_ms
    return elapsed, (time.process_time() - started) * 1000


def _init(field_cols: int, field_rows: int, slip: float) -> None:
    cv2.setNumThreads(1)
    layout = make_layout(field_cols, field_rows)
    film = EtchedFilm(21)
    engrave_layout(film, layout, 128.0)
    _world.update(layout=layout, film=film, microscopes={
        slipping: SimulatedMicroscope(film, layout, CALIBRATION, 5,
                                      MicroscopeModel(slip_probability=1.0 if slipping else 0.03))
        for slipping in (False, True)}, slip=slip)


def _shoot(field: int) -> tuple[int, np.ndarray, dict]:
    layout = _world["layout"]
    slipping = (field * 0.618034) % 1.0 < _world["slip"]  # spread evenly over the batch
    microscope = _world["microscopes"][slipping]
    microscope.move_to(*CALIBRATION.design_to_stage(*layout.field_center_um(field)))
    shot = microscope.snap()
    return field, shot.image, shot.truth


def _photo(index: int) -> tuple[np.ndarray, dict]:
    layout = _world["layout"]
    field, slot = index % layout.fields_per_batch, (index * 5 + index // 7) % 12
    return capture_label(_world["film"], layout, field, slot, 1000 + index)


def iou(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(a, b)
    union = cv2.contourArea(a) + cv2.contourArea(b) - inter
    return float(inter / union) if union > 0 else 0.0


def inside_fraction(corners, size) -> float:
    quad = np.asarray(corners, np.float32)
    frame = np.array([[0, 0], [size[0] - 1, 0], [size[0] - 1, size[1] - 1], [0, size[1] - 1]],
                     np.float32)
    inter, _ = cv2.intersectConvexConvex(quad, frame)
    return float(inter / cv2.contourArea(quad))


def score_field(result, truth: dict, layout: BatchLayout, field: int, templates, tally: dict) -> None:
    labels, size = result.labels, truth["image_size"]
    claimed = set()
    for label in truth["labels"]:
        scores = [iou(label["corners_px"], found.corners) for found in labels]
        best = int(np.argmax(scores)) if scores else -1
        score = scores[best] if scores else 0.0
        if label["whole"]:
            tally["whole"] += 1
            if score >= 0.9:
                tally["found"] += 1
                claimed.add(best)
                error = np.abs(labels[best].corners - np.array(label["corners_px"])).max()
                tally["corner_error_px"].append(float(error))
                tally["orientation_right"] += bool(error < 0.25 * result.expected_label_px)
        elif inside_fraction(label["corners_px"], size) >= 0.05:
            tally["cut"] += 1
            if score >= 0.3:
                tally["cut_cropped"] += 1
                claimed.add(best)
    tally["spurious"] += len(labels) - len(claimed)
    corners_of = {t["label_id"]: t["corners_px"] for t in truth["labels"]}
    for use_glyphs in (False, True):
        key = "glyphs" if use_glyphs else "no_glyphs"
        patterns = [f.glyph.pattern if f.glyph else None for f in labels] if use_glyphs else None
        assignment = assign_slots([f.centre for f in labels], [f.angle_deg for f in labels],
                                  layout, field, truth["pixel_size_um"], tuple(size), patterns)
        tally[key]["fields_ambiguous"] += assignment.status == "ambiguous"
        for found, place in zip(labels, assignment.slots, strict=True):
            if place is None:
                tally[key]["withheld"] += 1
                continue
            # right only if the crop is that label: a crop of no label given an id is wrong
            true = corners_of.get(place.label_id)
            right = true is not None and iou(true, found.corners) >= 0.5
            tally[key]["right" if right else "wrong"] += 1
    if templates is not None:
        tally["glyph_turn_right"] += sum(f.glyph.quarter_turns == 0 for f in labels
                                         if f.glyph is not None)


def new_tally() -> dict:
    return {"whole": 0, "found": 0, "cut": 0, "cut_cropped": 0, "spurious": 0,
            "corner_error_px": [], "orientation_right": 0, "glyph_turn_right": 0,
            "ms": [], "ms_best": [], "cpu_ms": [],
            "no_glyphs": {"right": 0, "wrong": 0, "withheld": 0, "fields_ambiguous": 0},
            "glyphs": {"right": 0, "wrong": 0, "withheld": 0, "fields_ambiguous": 0}}


def parse_args() -> argparse.Namespace:
    """The command line, checked before anything is simulated or written."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="24 fields and 60 handheld photos")
    parser.add_argument("--fields", type=int, default=200, help="fields to photograph (default 200)")
    parser.add_argument("--photos", type=int, default=400, help="handheld photos (default 400)")
    parser.add_argument("--slip", type=float, default=0.2,
                        help="fraction of fields shot with a slipping stage (default 0.2)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per field and method")
    parser.add_argument("--out", type=Path, default=Path("bench_segmentation.json"),
                        help="where to write the figures (default ./bench_segmentation.json)")
    parser.add_argument("--baseline", type=Path, help="another checkout whose fast method to time and compare")
    parser.add_argument("--threads", type=int, default=2,
                        help="OpenCV threads of the timed methods (default 2)")
    args = parser.parse_args()
    if not 1 <= args.threads <= 64:
        print(f"--threads must be 1-64 (got {args.threads})", file=sys.stderr)
        raise SystemExit(2)
    if args.quick:
        args.fields, args.photos, args.repeat = 24, 60, 3
    return args


def main() -> None:
    args = parse_args()
    modules = {"paper": this_segment, "fast": this_segment}
    if args.baseline:
        modules["fast_baseline"] = load_baseline(args.baseline)
    cols = max(1, math.ceil(math.sqrt(args.fields * 4 / 3)))
    rows = math.ceil(args.fields / cols)
    load_before = os.getloadavg()[0]

    started = time.perf_counter()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, context, _init, (cols, rows, args.slip)) as pool:
        shots = list(pool.map(_shoot, range(args.fields), chunksize=4))
        photos = list(pool.map(_photo, range(args.photos), chunksize=8))
    simulate_s = time.perf_counter() - started
    layout = make_layout(cols, rows)
    templates = render_templates({n: pattern_by_name(n).strokes for n in pattern_names()},
                                 glyph_frac=layout.glyph_size_um / layout.label_size_um,
                                 line_frac=7.0 / layout.label_size_um)

    cv2.setNumThreads(args.threads)
    label_px = layout.label_size_um / 0.6
    tallies = {method: new_tally() for method in modules}
    differences = []
    for field, image, truth in shots:
        # the methods on the same field, one after the other (interleaving them run by run
        # would hand each a cache the other just flushed, unlike a real line, where the
        # field was just decoded)
        times = {method: [timed(module, image, label_px, method.split("_")[0]) for _ in range(args.repeat)]
                 for method, module in modules.items()}
        results = {}
        for method, module in modules.items():
            tallies[method]["ms"] += [wall for wall, _ in times[method]]
            tallies[method]["cpu_ms"] += [cpu for _, cpu in times[method]]
            tallies[method]["ms_best"].append(min(wall for wall, _ in times[method]))
            results[method] = module.segment(image, label_px, method=method.split("_")[0], templates=templates)
            score_field(results[method], truth, layout, field, templates, tallies[method])
        if args.baseline and (difference := label_difference(results["fast"], results["fast_baseline"])):
            differences.append(f"field {field}: {difference}")

    hand = {"photos": len(photos), "whole": 0, "found": 0, "cut_cropped": 0, "right": 0,
            "ambiguous": 0, "ambiguous_right": 0, "wrong": 0, "pattern_right": 0, "ms": [], "ms_baseline": []}
    for image, truth in photos:
        corners = np.array(truth["corners_px"])
        whole = bool(corners.min() >= 0 and (corners.max(axis=0) <= np.subtract(image.shape[1::-1], 1)).all())
        result = segment(image, layout.label_size_um / 0.675, k=1, size_tolerance=0.3,
                         rotation_deg=None, templates=templates)
        hand["ms"].append(result.elapsed_ms)
        if args.baseline:
            theirs = modules["fast_baseline"].segment(image, layout.label_size_um / 0.675, k=1, size_tolerance=0.3,
                                                      rotation_deg=None, templates=templates)
            hand["ms_baseline"].append(theirs.elapsed_ms)
            if difference := label_difference(result, theirs):
                differences.append(f"handheld photo {len(hand['ms']) - 1}: {difference}")
        hand["whole"] += whole
        score = iou(result.labels[0].corners, truth["corners_px"]) if result.labels else 0.0
        if not whole:  # the photo cuts the label: nothing may be cropped
            hand["cut_cropped"] += score >= 0.3
            continue
        if score < 0.9:
            continue
        label = result.labels[0]
        hand["found"] += 1
        right = bool(np.linalg.norm(label.corners[0] - truth["corners_px"][0])
                     < 0.25 * label.side_px)
        hand["pattern_right"] += label.glyph.pattern == truth["pattern"]
        if label.orientation == "ambiguous":
            hand["ambiguous"] += 1
            hand["ambiguous_right"] += right
        else:
            hand["right" if right else "wrong"] += 1

    report = summarise(tallies, hand, args, shots, cols, rows, simulate_s, load_before)
    if args.baseline:
        report["baseline"] = str(args.baseline)
        report["labels_differing_from_baseline"] = len(differences)
        report["differences"] = differences[:20]
    print_table(report)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nfigures written to {args.out}")
    if differences:
        print(f"FAILED: {len(differences)} fields or photos segment differently from the baseline:", file=sys.stderr)
        for difference in differences[:20]:
            print(f"  {difference}", file=sys.stderr)
        raise SystemExit(1)


def summarise(tallies: dict, hand: dict, args, shots, cols: int, rows: int, simulate_s: float,
              load_before: float) -> dict:
    def rate(a: int, b: int) -> float | None:
        return round(a / b, 5) if b else None

    methods = {}
    for method, t in tallies.items():
        ms = np.array(t["ms"])
        errors = np.array(t["corner_error_px"] or [-1.0])
        methods[method] = {
            "ms_per_field": {"median": round(float(np.median(ms)), 2),
                             "p90": round(float(np.percentile(ms, 90)), 2),
                             "min": round(float(ms.min()), 2),
                             # each field's best of its repeats: what is left of other load
                             "median_of_best": round(float(np.median(t["ms_best"])), 2),
                             "cpu_median": round(float(np.median(t["cpu_ms"])), 2)},
            "whole_labels": t["whole"], "found_iou_0.9": t["found"],
            "found_rate": rate(t["found"], t["whole"]),
            "cut_labels": t["cut"], "cut_cropped": t["cut_cropped"],
            "cut_rejected_rate": rate(t["cut"] - t["cut_cropped"], t["cut"]),
            "crops_of_no_label": t["spurious"],
            "corner_error_px": {"mean": round(float(errors.mean()), 3),
                                "p99": round(float(np.percentile(errors, 99)), 3)},
            "factory_orientation_right_rate": rate(t["orientation_right"], t["found"]),
            "factory_glyph_agrees_rate": rate(t["glyph_turn_right"], t["found"] + t["spurious"]),
            "ids_without_glyphs": t["no_glyphs"], "ids_with_glyphs": t["glyphs"],
        }
    slipped = sum(np.hypot(*truth["stage_error_um"]) > 50 for _, _, truth in shots)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python tools/bench_segmentation.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"OpenCV {cv2.__version__} on {args.threads} threads, nice {os.nice(0)}",
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "fields": len(shots), "batch_fields": f"{cols}x{rows}", "slipped_fields": int(slipped),
        "timings_per_field": args.repeat, "simulation_s": round(simulate_s, 1),
        "paper_reported_ms_per_field": 200,
        "methods": methods,
        "paper_over_fast": {key: round(methods["paper"]["ms_per_field"][key] / methods["fast"]["ms_per_field"][key], 2)
                            for key in ("median", "median_of_best", "cpu_median")},
        "handheld": {
            "photos": hand["photos"], "label_whole_in_photo": hand["whole"],
            "found_rate": rate(hand["found"], hand["whole"]),
            "cut_labels_cropped": hand["cut_cropped"],
            "orientation_right": hand["right"], "orientation_ambiguous": hand["ambiguous"],
            "ambiguous_but_best_guess_right": hand["ambiguous_right"],
            "orientation_wrong": hand["wrong"],
            "pattern_right_rate": rate(hand["pattern_right"], hand["found"]),
            "ms_per_photo_median": round(float(np.median(hand["ms"])), 2) if hand["ms"] else None,
            "baseline_ms_per_photo_median": round(float(np.median(hand["ms_baseline"])), 2)
            if hand["ms_baseline"] else None,
        },
    }


def print_table(report: dict) -> None:
    paper, fast = report["methods"]["paper"], report["methods"]["fast"]
    print(f"\n{report['fields']} simulated fields ({report['slipped_fields']} slipped), "
          f"{report['machine']}, load {report['load_average']}")

    def ids(m: dict, key: str) -> str:
        d = m[key]
        return f"{d['right']} right, {d['wrong']} wrong, {d['withheld']} withheld"

    rows = [
        ("ms per field, median (p90)",
         *(f"{m['ms_per_field']['median']:.2f} ({m['ms_per_field']['p90']:.2f})" for m in (paper, fast))),
        ("ms per field, median of each field's best",
         *(f"{m['ms_per_field']['median_of_best']:.2f}" for m in (paper, fast))),
        ("CPU ms per field (every thread), median",
         *(f"{m['ms_per_field']['cpu_median']:.2f}" for m in (paper, fast))),
        ("whole labels found, IoU >= 0.9",
         *(f"{m['found_iou_0.9']}/{m['whole_labels']} = {100 * (m['found_rate'] or 0):.2f}%"
           for m in (paper, fast))),
        ("labels cut by the edge, rejected",
         *(f"{m['cut_labels'] - m['cut_cropped']}/{m['cut_labels']}" for m in (paper, fast))),
        ("crops of no label", *(str(m["crops_of_no_label"]) for m in (paper, fast))),
        ("corner error px, mean (p99)",
         *(f"{m['corner_error_px']['mean']} ({m['corner_error_px']['p99']})" if m["found_iou_0.9"]
           else "-" for m in (paper, fast))),
        ("ids, no glyph templates", *(ids(m, "ids_without_glyphs") for m in (paper, fast))),
        ("  fields ambiguous", *(str(m["ids_without_glyphs"]["fields_ambiguous"]) for m in (paper, fast))),
        ("ids, with glyph templates", *(ids(m, "ids_with_glyphs") for m in (paper, fast))),
        ("  fields ambiguous", *(str(m["ids_with_glyphs"]["fields_ambiguous"]) for m in (paper, fast))),
        ("factory crops in design orientation",
         *(f"{100 * (m['factory_orientation_right_rate'] or 0):.2f}%" for m in (paper, fast))),
    ]
    width = max(len(r[0]) for r in rows) + 2
    cols = max(len(r[1]) for r in rows) + 3
    print(f"{'':<{width}}{'paper':<{cols}}fast (ours)")
    for name, a, b in rows:
        print(f"{name:<{width}}{a:<{cols}}{b}")
    hand = report["handheld"]
    print(f"\nhandheld photos (any rotation), fast + glyph templates: {hand['photos']} photos "
          f"({hand['label_whole_in_photo']} with the label whole), "
          f"found {100 * (hand['found_rate'] or 0):.2f}%, cut labels cropped {hand['cut_labels_cropped']}, "
          f"orientation right "
          f"{hand['orientation_right']}, ambiguous {hand['orientation_ambiguous']} "
          f"(best guess right in {hand['ambiguous_but_best_guess_right']}), wrong "
          f"{hand['orientation_wrong']}; pattern right {100 * (hand['pattern_right_rate'] or 0):.1f}%; "
          f"{hand['ms_per_photo_median']} ms a photo")
    print(f"paper, as reported: about {report['paper_reported_ms_per_field']} ms a field")
    print("the paper's steps over ours, per field: " + ", ".join(f"{v:.2f} times ({k})"
                                                               for k, v in report["paper_over_fast"].items()))
    if "fast_baseline" in report["methods"]:
        base = report["methods"]["fast_baseline"]
        print(f"baseline ({report['baseline']}): fast {base['ms_per_field']['median']:.2f} ms a field, "
              f"CPU {base['ms_per_field']['cpu_median']:.2f} (ours {fast['ms_per_field']['median']:.2f}, "
              f"CPU {fast['ms_per_field']['cpu_median']:.2f}), "
              f"handheld {hand['baseline_ms_per_photo_median']} ms a photo "
              f"(ours {hand['ms_per_photo_median']}); labels differing from ours: "
              f"{report['labels_differing_from_baseline']}")


if __name__ == "__main__":
    main()
