"""End to end on a simulated batch: enroll, then verify handheld photos, as a device would.

    nice -n 10 .venv/bin/python tools/bench_verify.py --fields 4x4 --baseline /tmp/speed_base
    .venv/bin/python tools/bench_verify.py --fields 2x1 --designed     # the test model, a minute

1. a simulated film (`trainer.simdata`, a film seed the shipped model never trained on);
   every label of the first half of its fields is enrolled from one microscope capture
   into a copy of the bundle (`trainer.enroll`), signed with a fresh key;
2. handheld photos (`fabrication.sim.field_camera`: another camera, any rotation, tilt,
   white balance, motion blur, JPEG) of every enrolled label (genuine) and of every label
   of the other half (never enrolled: counterfeit) are written once; then a worker process
   per side (this checkout, and `--baseline`, another checkout of the project such as a
   `git worktree` of main) verifies every photo with its own `edge_app.verify.Verifier`
   (segment, one model run, shard search, decide), the sides taking turns `--rounds` times,
   so both meet the same load;
3. printed: the verdicts' accuracy and the per-step times (median and 99th percentile) of
   each side, and the CPU time of a photo (`timings_ms.cpu`: every thread of the process, so
   a loaded machine's waits for a core do not enter it, as they enter the wall-clock times).
   With `--baseline`, every verdict of this checkout is compared with the baseline's on the
   same photo (kind, label, pattern, reason; scores and confidences within
   `SCORE_TOLERANCE`, corners within `CORNER_TOLERANCE_PX`): the run exits with status 1,
   naming the photos, if any differs.

`--bundle` is an exported bundle (default: the shipped models/default); `--designed`
uses the designed test model of `trainer.harness.designed_model` instead (plumbing only: its
weights are not trained).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SCORE_TOLERANCE = 1e-5  # float rounding of the model's and the search's arithmetic, no more
CORNER_TOLERANCE_PX = 0.1 + 1e-6  # the records round corners to 0.1 px
STEPS = ("segment", "model", "search", "total")
WARM_UP = 3  # photos verified untimed first: imports, the interpreter's first runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--designed", action="store_true", help="use the designed test model (plumbing only)")
    parser.add_argument("--fields", default="4x2", help="fields of the simulated batch, COLSxROWS (12 labels each)")
    parser.add_argument("--film-seed", type=int, default=901)
    parser.add_argument("--shots", type=int, default=1, help="handheld photos of every label")
    parser.add_argument("--no-classify", action="store_true")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout of the project to time and compare verdicts with")
    parser.add_argument("--rounds", type=int, default=3, help="times each side verifies every photo")
    parser.add_argument("--threads", type=int, default=2, help="model threads of both sides (default 2, the device's)")
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "bench_verify.json")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # a side's run over a prepared folder
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.out, classify=not args.no_classify, threads=args.threads)
    if args.baseline is not None and not (args.baseline / "edge_app" / "verify.py").is_file():
        print(f"--baseline {args.baseline} is not a checkout of this project (no edge_app/verify.py)",
              file=sys.stderr)
        return 2
    if args.rounds < 1 or not 1 <= args.threads <= 64:
        print(f"--rounds must be at least 1 (got {args.rounds}), --threads 1-64 (got {args.threads})",
              file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench_verify."))
    try:
        world = prepare(args, work)
        if world is None:
            return 2
        sides = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        runs = run_sides(sides, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    differences = compare(runs["baseline"][0], runs["this"][0]) if args.baseline else []
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "nice": os.nice(0),
                    "load_average": [round(v, 2) for v in load_before],
                    "load_average_end": [round(v, 2) for v in os.getloadavg()]},
        "command": "python tools/bench_verify.py " + " ".join(sys.argv[1:] if argv is None else argv),
        **world,
        "rounds": args.rounds, "model_threads": args.threads,
        **summary(runs["this"], world["truth"]),
    }
    del result["truth"]
    if args.baseline:
        result["baseline"] = {"source": describe(args.baseline), **summary(runs["baseline"], world["truth"])}
        result["verdicts_compared"] = sum(len(photo) for photo in runs["this"][0]["verdicts"])
        result["verdicts_differing"] = len(differences)
        result["differences"] = differences[:20]
        result["median_ratio_to_baseline"] = {
            key: round(result["timings_ms"][key]["median"] / result["baseline"]["timings_ms"][key]["median"], 3)
            for key in ("segment", "total", "cpu")}
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("wrong", "model")}, indent=1))
    if differences:
        print(f"\nFAILED: {len(differences)} verdicts differ from the baseline's", file=sys.stderr)
        for difference in differences[:20]:
            print(f"  {difference}", file=sys.stderr)
        return 1
    return 0


def prepare(args, work: Path) -> dict | None:
    """Enroll a simulated batch into a signed copy of the bundle and write the handheld photos;
    what the results file says of it, with the truth of every photo."""
    import cv2

    from fabrication.sim.field_camera import capture_label
    from trainer.enroll import enroll
    from trainer.keys import generate_keypair, load_private_key
    from trainer.simdata import SimSpec, field_captures, make_film, make_layout

    cols, rows = (int(v) for v in args.fields.lower().split("x"))
    spec = SimSpec("E2E", args.film_seed, cols, rows, microscope_shots=1, handheld_shots=0)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    enrolled_fields = list(range(layout.fields_per_batch // 2))
    crops = work / "crops"
    (crops / "crops").mkdir(parents=True)
    lines = []
    for field in enrolled_fields:
        for label_id, _, crop in field_captures(spec, layout, film, field):
            cv2.imwrite(str(crops / "crops" / f"{label_id}.png"), crop)
            lines.append(f"{label_id},{layout.pattern_of(field, int(label_id[-2:]))}")
    (crops / "labels.csv").write_text("label_id,pattern\n" + "\n".join(lines) + "\n")
    bundle = work / "bundle"
    if args.designed:
        from trainer.harness.designed_model import write_model_bundle

        write_model_bundle(bundle, [cv2.imread(str(p)) for p in sorted((crops / "crops").glob("*.png"))][:64])
    else:
        if not (args.bundle / "manifest.json").exists():
            print(f"no exported bundle at {args.bundle}; give --bundle or --designed", file=sys.stderr)
            return None
        shutil.copytree(args.bundle, bundle, ignore=shutil.ignore_patterns("shards"))
    private, public, _ = generate_keypair(work / "keys" / "bench")
    (work / "trusted").mkdir()
    shutil.copy(public, work / "trusted" / "bench.pub")
    t = time.perf_counter()
    report = enroll(bundle, crops, load_private_key(private), progress=False)
    enroll_s = time.perf_counter() - t
    enrolled_ids = {line.split(",")[0] for line in lines}
    truth, photos = [], {}
    not_captured = 0  # labels of enrolled fields whose enrollment capture was cut: a factory re-shoots them
    for field in range(layout.fields_per_batch):
        for slot in range(layout.labels_per_field):
            genuine = layout.label_id(field, slot) in enrolled_ids
            if field in enrolled_fields and not genuine:
                not_captured += 1
                continue
            for shot in range(args.shots):
                image, seen = capture_label(film, layout, field, slot, seed=7000 + shot)
                photos[f"p{len(truth)}"] = image
                truth.append({"label": seen["label_id"], "genuine": genuine})
    np.savez(work / "photos.npz", **photos)
    return {"bundle": "designed test model" if args.designed else str(args.bundle),
            "labels_enrolled": report.labels_added, "enroll_seconds": round(enroll_s, 1),
            "labels_not_enrolled_capture_cut": not_captured, "photos": len(truth), "truth": truth}


def run_sides(sides: dict[str, Path], work: Path, args) -> dict[str, list[dict]]:
    """Each side's worker over the same photos, the sides taking turns (the first side
    alternates round by round); every side's runs, in order."""
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    order = list(sides)
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            out = work / f"{name}.{round_}.json"
            env = {**os.environ, "PYTHONPATH": str(sides[name])}
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(work), "--out", str(out),
                       "--threads", str(args.threads)]
            subprocess.run(command + (["--no-classify"] if args.no_classify else []), env=env, check=True,
                           cwd=work)
            runs[name].append(json.loads(out.read_text()))
    for name, side_runs in runs.items():  # a side must give the same verdicts every time
        for later in side_runs[1:]:
            if compare(side_runs[0], later):
                raise SystemExit(f"{name}: the verdicts of one round differ from another's")
    return runs


def worker(work: Path, out: Path, classify: bool, threads: int) -> int:
    """Verify every photo of a prepared folder with the `edge_app` on this process's path."""
    import edge_app
    from edge_app.bundle import load_bundle
    from edge_app.verify import Verifier

    loaded = load_bundle(work / "bundle", work / "trusted")
    verifier = Verifier(loaded, classify=classify, num_threads=threads)
    with np.load(work / "photos.npz") as data:
        photos = [data[f"p{i}"] for i in range(len(data.files))]
    for image in photos[:WARM_UP]:
        verifier.verify_image(image)
    verdicts, cpu_ms = [], []
    for i, image in enumerate(photos):
        started = time.process_time()  # every thread's: what a loaded machine's waits do not inflate
        verdicts.append([v.to_dict() for v in verifier.verify_image(image, f"p{i}")])
        cpu_ms.append((time.process_time() - started) * 1000)
    model = loaded.manifest.model.to_dict() if loaded.manifest.model else {}
    out.write_text(json.dumps({"edge_app": str(Path(edge_app.__file__).parent), "threshold": loaded.threshold,
                               "model": {k: model.get(k) for k in ("name", "version", "backbone")},
                               "verdicts": verdicts, "cpu_ms": cpu_ms}))
    return 0


def summary(runs: list[dict], truth: list[dict]) -> dict:
    """A side's outcomes (from its first run: every run gives the same verdicts) and the
    per-step times of its readable photos over all its runs."""
    outcomes: Counter = Counter()
    wrong = []
    for photo, verdicts in zip(truth, runs[0]["verdicts"], strict=True):
        verdict = verdicts[0]
        right = (verdict["verdict"] == "genuine" and verdict["label_id"] == photo["label"]) if photo["genuine"] \
            else verdict["verdict"] == "counterfeit"
        kind = "genuine" if photo["genuine"] else "never enrolled"
        outcomes[(kind, verdict["verdict"] if right or verdict["verdict"] == "unreadable" else "WRONG")] += 1
        if not right:
            wrong.append({"label": photo["label"], "kind": kind, **verdict})
    timings: dict[str, list[float]] = {key: [] for key in (*STEPS, "cpu")}
    for run in runs:
        for verdicts, cpu_ms in zip(run["verdicts"], run["cpu_ms"], strict=True):
            if verdicts[0]["verdict"] != "unreadable":
                for key in STEPS:
                    timings[key].append(verdicts[0]["timings_ms"][key])
                timings["cpu"].append(cpu_ms)
    return {"edge_app": runs[0]["edge_app"], "model": runs[0]["model"], "threshold": runs[0]["threshold"],
            "outcomes": {f"{k} -> {v}": n for (k, v), n in sorted(outcomes.items())},
            "timings_ms": {k: {"median": round(float(np.median(v)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
                           for k, v in timings.items() if v},
            "wrong": wrong[:20]}


def compare(baseline: dict, run: dict) -> list[str]:
    """Every verdict of a worker's `run` that is not the `baseline` run's, in words."""
    found = []
    for i, (theirs, ours) in enumerate(zip(baseline["verdicts"], run["verdicts"], strict=True)):
        if len(theirs) != len(ours):
            found.append(f"photo p{i}: {len(ours)} verdicts, the baseline {len(theirs)}")
            continue
        for a, b in zip(theirs, ours, strict=True):
            found += [f"photo {b['source']}: {what}" for what in verdict_differences(a, b)]
    return found


def verdict_differences(a: dict, b: dict) -> list[str]:
    """What differs between two verdict records (`Verdict.to_dict`), timings aside."""
    found = [f"{key} {b[key]!r}, the baseline {a[key]!r}"
             for key in ("verdict", "label_id", "pattern", "reason_code", "searched", "threshold") if a[key] != b[key]]
    for key in ("score", "pattern_confidence"):
        if (a[key] is None) != (b[key] is None) or (a[key] is not None and abs(a[key] - b[key]) > SCORE_TOLERANCE):
            found.append(f"{key} {b[key]}, the baseline {a[key]}")
    if (a["corners_px"] is None) != (b["corners_px"] is None) or (
            a["corners_px"] is not None
            and np.abs(np.subtract(a["corners_px"], b["corners_px"])).max() > CORNER_TOLERANCE_PX):
        found.append(f"corners {b['corners_px']}, the baseline {a['corners_px']}")
    return found


def describe(source: Path) -> str:
    """The baseline checkout and its commit, when it is a git work tree."""
    head = subprocess.run(["git", "-C", str(source), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return f"{source} ({head.stdout.strip()})" if head.returncode == 0 else str(source)


if __name__ == "__main__":
    raise SystemExit(main())
