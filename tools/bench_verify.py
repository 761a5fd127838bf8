"""End to end on a simulated batch: enroll, then verify handheld photos, as a device would.

    nohup nice -n 19 .venv/bin/python tools/bench_verify.py > bench_verify.log 2>&1 &
    .venv/bin/python tools/bench_verify.py --fields 2x1 --designed     # the test model, a minute

1. a simulated film (`trainer.simdata`, a film seed the shipped model never trained on);
   every label of the first half of its fields is enrolled from one microscope capture
   into a copy of the bundle (`trainer.enroll`), signed with a fresh key;
2. handheld photos (`fabrication.sim.field_camera`: another camera, any rotation, tilt,
   white balance, motion blur, JPEG) of every enrolled label (genuine) and of every label
   of the other half (never enrolled: counterfeit) go through `edge_app.verify.Verifier`
   (segment, one model run, shard search, decide) on 2 threads;
3. printed: the verdicts' accuracy and the per-step times (median and 99th percentile).

`--bundle` is an exported bundle (default: the shipped models/default); `--designed`
uses the designed test model of `trainer.harness.designed_model` instead (plumbing only: its
weights are not trained).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from edge_app.runtime import shipped_bundle

    parser.add_argument("--bundle", type=Path, default=shipped_bundle())
    parser.add_argument("--designed", action="store_true", help="use the designed test model (plumbing only)")
    parser.add_argument("--fields", default="4x2", help="fields of the simulated batch, COLSxROWS (12 labels each)")
    parser.add_argument("--film-seed", type=int, default=901)
    parser.add_argument("--shots", type=int, default=1, help="handheld photos of every label")
    parser.add_argument("--no-classify", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("tools/results/bench_verify.json"))
    args = parser.parse_args(argv)

    import cv2

    from edge_app.bundle import load_bundle
    from edge_app.verify import Verifier
    from fabrication.sim.field_camera import capture_label
    from trainer.enroll import enroll
    from trainer.keys import generate_keypair, load_private_key
    from trainer.simdata import SimSpec, field_captures, make_film, make_layout

    cols, rows = (int(v) for v in args.fields.lower().split("x"))
    spec = SimSpec("E2E", args.film_seed, cols, rows, microscope_shots=1, handheld_shots=0)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    work = Path(tempfile.mkdtemp(prefix="bench_verify."))
    enrolled_fields = list(range(layout.fields_per_batch // 2))
    crops = work / "crops"
    lines = []
    for field in enrolled_fields:
        for label_id, _, crop in field_captures(spec, layout, film, field):
            (crops / "crops").mkdir(parents=True, exist_ok=True)
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
            return 2
        shutil.copytree(args.bundle, bundle, ignore=shutil.ignore_patterns("shards"))
    private, public, _ = generate_keypair(work / "keys" / "bench")
    (work / "trusted").mkdir()
    shutil.copy(public, work / "trusted" / "bench.pub")
    t = time.perf_counter()
    report = enroll(bundle, crops, load_private_key(private), progress=False)
    enroll_s = time.perf_counter() - t
    t = time.perf_counter()
    loaded = load_bundle(bundle, work / "trusted")
    open_ms = (time.perf_counter() - t) * 1000
    verifier = Verifier(loaded, classify=not args.no_classify)
    outcomes: Counter = Counter()
    timings: dict[str, list[float]] = {"segment": [], "model": [], "search": [], "total": []}
    wrong = []
    enrolled_ids = {line.split(",")[0] for line in lines}
    not_captured = 0  # labels of enrolled fields whose enrollment capture was cut: a factory re-shoots them
    for field in range(layout.fields_per_batch):
        for slot in range(layout.labels_per_field):
            genuine = layout.label_id(field, slot) in enrolled_ids
            if field in enrolled_fields and not genuine:
                not_captured += 1
                continue
            for shot in range(args.shots):
                image, truth = capture_label(film, layout, field, slot, seed=7000 + shot)
                verdicts = verifier.verify_image(image, truth["label_id"])
                verdict = verdicts[0]
                right = (verdict.verdict == "genuine" and verdict.label_id == truth["label_id"]) if genuine \
                    else verdict.verdict == "counterfeit"
                kind = "genuine" if genuine else "never enrolled"
                outcomes[(kind, verdict.verdict if right or verdict.verdict == "unreadable" else "WRONG")] += 1
                if not right:
                    wrong.append({"label": truth["label_id"], "kind": kind, **verdict.to_dict()})
                if verdict.verdict != "unreadable":
                    for key in timings:
                        timings[key].append(verdict.timings_ms[key])
    result = {
        "bundle": "designed test model" if args.designed else str(args.bundle),
        "model": loaded.manifest.model.to_dict() if loaded.manifest.model else {}, "threshold": loaded.threshold,
        "labels_enrolled": report.labels_added, "enroll_seconds": round(enroll_s, 1),
        "labels_not_enrolled_capture_cut": not_captured,
        "bundle_open_ms": round(open_ms, 1),
        "outcomes": {f"{k} -> {v}": n for (k, v), n in sorted(outcomes.items())},
        "timings_ms": {k: {"median": round(float(np.median(v)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
                       for k, v in timings.items() if v},
        "wrong": wrong[:20], "load_average": os.getloadavg(), "classify": not args.no_classify,
    }
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k not in ("wrong", "model")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
