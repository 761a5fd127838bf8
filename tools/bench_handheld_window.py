"""Handheld photos of a label's window against whole photos (`fabrication.sim.field_camera`).

    nice -n 10 .venv/bin/python tools/bench_handheld_window.py --photos 1000 --cache /tmp/hw_cache

The same shots taken both ways (`capture_label(..., window=True)` and the whole 800x600
frame), on film seeds the shipped model never saw:

- through `puf bench`'s own pipeline twice (`trainer.harness.bench.experiment`: 1,200
  distinct labels enrolled once each, `--photos` genuine photos of them and `--photos`
  counterfeit photos of never-enrolled labels, every photo verified by the device's own
  `Verifier.verify_image`): the genuine and counterfeit score distributions side by side
  (quantiles, two-sample Kolmogorov-Smirnov), how often the device's segmentation finds
  the label (readable) and accepts it;
- on `--sample` labels in this process: ms a photo both ways, wall and CPU (alternating, so
  the machine's load hits both alike), and the pixels: the window against the same part of the whole
  photo (green channel: correlation, mean absolute difference, the difference's spread
  beside one exposure's sensor noise at that level before JPEG), and against that part
  moved by `--shift` px, which a misplaced window or film region would be.

Printed and written to tools/results/handheld_window.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_label_render import QUANTILES, ks_two_sample, machine, spread

from edge_app.atomic_write import write_atomic

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pixels(sample: int, shift: int) -> tuple[dict, dict]:
    """ms a photo both ways, and the window's pixels against the whole photo's."""
    from fabrication.sim.field_camera import FieldCameraModel, capture_label
    from trainer.harness.bench.plan import COUNTERFEIT_SEED
    from trainer.simdata import SimSpec, make_film, make_layout

    spec = SimSpec("HW1", COUNTERFEIT_SEED + 900, 10, 10, microscope_shots=1, handheld_shots=0)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    camera = FieldCameraModel()
    capture_label(film, layout, 0, 0, 1, window=True)  # warm up
    ms: dict[str, list[float]] = {"window": [], "whole": [], "window_cpu": [], "whole_cpu": []}
    rows: dict[str, list[float]] = {"correlation": [], "correlation_shifted": [], "mean_abs_diff_dn": [],
                                    "diff_std_dn": [], "noise_std_dn": [], "window_px_share": []}
    for n in range(sample):
        field, slot = divmod(n, layout.labels_per_field)
        seed = 50_000 + n
        start, cpu = time.perf_counter(), time.process_time()
        fast, truth = capture_label(film, layout, field, slot, seed, window=True)
        ms["window"].append((time.perf_counter() - start) * 1000)
        ms["window_cpu"].append((time.process_time() - cpu) * 1000)
        start, cpu = time.perf_counter(), time.process_time()
        whole, _ = capture_label(film, layout, field, slot, seed)
        ms["whole"].append((time.perf_counter() - start) * 1000)
        ms["whole_cpu"].append((time.process_time() - cpu) * 1000)
        x0, y0, w, h = truth["window_px"]
        a = fast[:, :, 1].astype(np.float64)
        b = whole[y0:y0 + h, x0:x0 + w, 1].astype(np.float64)
        moved = np.roll(whole[:, :, 1], (shift, shift), (0, 1))[y0:y0 + h, x0:x0 + w].astype(np.float64)
        inner = (slice(shift, -shift or None), slice(shift, -shift or None))  # away from the roll's wrap
        rows["correlation"].append(float(np.corrcoef(a[inner].ravel(), b[inner].ravel())[0, 1]))
        rows["correlation_shifted"].append(float(np.corrcoef(a[inner].ravel(), moved[inner].ravel())[0, 1]))
        rows["mean_abs_diff_dn"].append(float(np.abs(a - b).mean()))
        rows["diff_std_dn"].append(float((a - b).std()))
        # one exposure's shot and read noise at the window's mean green level, before JPEG
        level = float(b.mean())
        rows["noise_std_dn"].append(math.sqrt(level / 6.0 + 2.5**2))
        rows["window_px_share"].append(w * h / (camera.width_px * camera.height_px))
    return ({way: spread(values) for way, values in ms.items()},
            {name: spread(values) for name, values in rows.items()})


def bench_scores(photos: int, cache: Path, workers: int) -> dict:
    """`puf bench`'s scores and verdicts for the same shots, window and whole."""
    from edge_app.runtime import shipped_bundle
    from trainer.harness.bench import experiment
    from trainer.harness.bench.plan import BenchPlan

    plan = BenchPlan(labels=1_200, augmented=1, genuine=photos, counterfeit=photos, clones=0, unclassified=0,
                     keypoint_gallery=0, second_stage=0, whole_queries=0, normalisation=0, workers=workers)
    runs = {way: experiment.run(replace(plan, whole_photos=int(way == "whole")), shipped_bundle(), cache)
            for way in ("window", "whole")}
    out: dict = {"threshold": runs["window"]["threshold"], "kinds": {}}
    for kind in ("genuine", "counterfeit"):
        scores = {way: np.array([s for s in run["scores"][kind] if s is not None]) for way, run in runs.items()}
        d, p = ks_two_sample(scores["window"], scores["whole"])
        summary = {way: run["with_classification"][kind] for way, run in runs.items()}
        out["kinds"][kind] = {
            "photos": photos,
            "readable": {way: s["photos"] - s["unreadable"] for way, s in summary.items()},
            "accepted": {way: s["accepted"] for way, s in summary.items()},
            "correct": {way: s["correct"] for way, s in summary.items()},
            "quantiles": [{"q": q, **{way: round(float(np.quantile(v, q)), 4) for way, v in scores.items()}}
                          for q in QUANTILES],
            "ks_d": round(d, 4), "ks_p": round(p, 4)}
    out["photos_s"] = {way: run["steps"]["photos_s"] for way, run in runs.items()}
    return out


def markdown(result: dict) -> str:
    ms, px, sc = result["ms_a_photo"], result["pixels"], result["scores"]
    lines = [f"# Handheld photos: the label's window against the whole photo ({result['date'][:10]})", "",
             f"{result['machine']}; `{result['command']}`.", "",
             "| | window | whole photo |", "| --- | ---: | ---: |",
             f"| ms a photo, median (p10-p90), {result['sample']} photos | {ms['window']['median']} "
             f"({ms['window']['p10']}-{ms['window']['p90']}) | {ms['whole']['median']} "
             f"({ms['whole']['p10']}-{ms['whole']['p90']}) |",
             f"| CPU ms a photo (this process's own time: less of the machine's load), median | "
             f"{ms['window_cpu']['median']} | {ms['whole_cpu']['median']} |",
             f"| photos for the bench, s (2 workers; 0 when cached) | {sc['photos_s']['window']} | "
             f"{sc['photos_s']['whole']} |"]
    for kind, row in sc["kinds"].items():
        for what in ("readable", "accepted"):
            lines.append(f"| {kind} photos {what} of {row['photos']} | {row[what]['window']} | {row[what]['whole']} |")
    lines += ["", f"Pixels (green channel, window against the whole photo's same pixels, median over "
              f"{result['sample']}): correlation {px['correlation']['median']}, mean |difference| "
              f"{px['mean_abs_diff_dn']['median']} DN, its spread {px['diff_std_dn']['median']} DN against "
              f"{px['noise_std_dn']['median']} DN for one exposure's sensor noise before JPEG (the noise's "
              f"realisation is the one thing drawn apart); moved by {result['shift']} px the "
              f"correlation falls to {px['correlation_shifted']['median']}. The window is "
              f"{px['window_px_share']['median']:.0%} of the frame (median).", ""]
    for kind, row in sc["kinds"].items():
        lines += [f"{kind.capitalize()} scores (threshold {sc['threshold']}): KS D = {row['ks_d']}, "
                  f"p = {row['ks_p']}", "", "| quantile | window | whole |", "| ---: | ---: | ---: |"]
        lines += [f"| {r['q']} | {r['window']:.4f} | {r['whole']:.4f} |" for r in row["quantiles"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1_000, help="genuine and counterfeit photos, each way")
    parser.add_argument("--sample", type=int, default=60, help="photos timed and compared pixel by pixel")
    parser.add_argument("--shift", type=int, default=2, help="px the planted misplacement moves the whole photo")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "puf-bench-window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "handheld_window.json")
    args = parser.parse_args(argv)
    ms, px = pixels(args.sample, args.shift)
    print(json.dumps({"ms_a_photo": ms, "pixels": px}, indent=1), flush=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "command": f"tools/bench_handheld_window.py --photos {args.photos} --sample {args.sample} "
                   f"--shift {args.shift} --workers {args.workers}",
        "sample": args.sample, "shift": args.shift,
        "ms_a_photo": ms, "pixels": px,
        "scores": bench_scores(args.photos, args.cache, args.workers),
    }
    write_atomic(args.out, json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    write_atomic(args.out.with_suffix(".md"), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
