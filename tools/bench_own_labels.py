"""The "Your own labels" walkthrough at a measured size, on a film unlike the shipped model's.

A factory with its own glyphs (docs/examples/own_glyphs.svg, 12 of them) etches them into a
film with grains about 3x larger and half the contrast of the default one (the `coarse`
preset). Its microscope hands over plain PNGs named by camera timestamp, with no metadata.
From there the commands of docs/tutorials/own-labels.md run one after the other:

    puf patterns   glyphs -> patterns.json
    puf segment    the training batch's PNGs (pixel size found from the labels) -> registry
    puf train      from the shipped model (--init models/default), one capture a label: the
                   pattern head alone (train_only=pattern_head), and the whole network fine-tuned
                   (and, with --scratch, the same steps from scratch, for the comparison)
    puf export / keygen / segment + enroll     the factory's batch (1,200 labels enrolled)
    puf queries    handheld re-captures named by label id -> a query set
    puf evaluate   the threshold for --far, with its confidence bounds, written and re-signed
    puf verify     new handheld photos: genuine, never-enrolled labels, the job on another film

and the shipped model is measured beside it on the very same crops: it cannot read the new
glyphs (enroll refuses it, as it should), so both models are compared with the pattern read
from the glyph templates and each model's threshold set the same way from the same
re-captures (`compare_models`).

    python tools/bench_own_labels.py --out /tmp/own            # the full size: about an hour on 2 cores
    python tools/bench_own_labels.py --out /tmp/own-s --quick  # every step at a tiny size (minutes)

Every step leaves its output in --out and is skipped when run again, so a stopped run
resumes. The report (report.json, and a table) is what docs/results/bench_own_labels.md shows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_app.atomic_write import replacing
from fabrication.batch_dir import BatchDir

ROOT = Path(__file__).resolve().parents[1]
GLYPHS = ROOT / "docs" / "examples" / "own_glyphs.svg"


@dataclass(frozen=True)
class Size:
    train_fields: str  # the fine-tuning batch, COLSxROWS fields of 12 labels
    factory_fields: str  # the batch the factory enrolls; its last `held_out_fields` are never enrolled
    held_out_fields: int
    calibration_photos: int  # re-captures of each kind (genuine, never enrolled) to set the threshold
    test_photos: int  # new handheld photos of each kind: genuine; never enrolled + other film (half each)
    steps: int
    batch_size: int
    far: float
    frr_bound: float  # the genuine comparisons must bound the FRR below this (puf evaluate --frr-bound)


FULL = Size("10x10", "12x10", 20, 1600, 1000, 600, 128, 1e-5, 0.01)
QUICK = Size("3x2", "4x2", 2, 40, 24, 6, 32, 0.05, 0.1)


def puf(*argv: str, ok: tuple[int, ...] = (0,)) -> str:
    """Run a verb in this process as a user types it; its stdout."""
    from trainer.harness.line import installed, verb_output

    shown = [a for a in argv if not a.endswith(".jpg")]
    print("==", "puf", " ".join(shown), f"(and {len(argv) - len(shown)} photos)" if len(shown) < len(argv) else "",
          file=sys.stderr, flush=True)
    return verb_output(list(argv), ok, installed())


def step_done(marker: Path) -> bool:
    if marker.exists():
        print(f"-- {marker.name}: done in an earlier run", file=sys.stderr)
        return True
    return False


def mark(marker: Path, data: dict) -> dict:
    marker.write_text(json.dumps(data, indent=1))
    return data


def make_batch(out: Path, name: str, fields: str, film_seed: int) -> Path:
    """Design, etch into the coarse film and photograph a batch; then hand its fields over as
    timestamp-named PNGs with no metadata (the stage manifest and truth stay behind)."""
    batch, scans = out / name, out / f"{name}_scans"
    if step_done(out / f"{name}.made.json"):
        return scans
    shutil.rmtree(batch, ignore_errors=True)
    puf("design", str(batch), "--fields", fields, "--pattern-set", str(out / "patterns.json"), "--json")
    puf("etch", str(batch), "--sim", "--film-style", "coarse", "--film-seed", str(film_seed), "--json")
    puf("photograph", str(batch), "--sim")
    scans.mkdir(exist_ok=True)
    fields = BatchDir(batch).fields_manifest().images(BatchDir(batch).fields_dir)
    for field in fields:
        image = cv2.imread(str(field.path), cv2.IMREAD_COLOR)  # drops the TIFF's tags
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(1_764_496_500 + 7 * field.field))
        cv2.imwrite(str(scans / f"IMG_{stamp}.png"), image)
    mark(out / f"{name}.made.json", {"fields": len(fields)})
    return scans


def segment(out: Path, name: str, registry: Path) -> dict:
    marker = out / f"{name}.segmented.json"
    if marker.exists():
        return json.loads(marker.read_text())
    report = json.loads(puf("segment", str(out / f"{name}_scans"), "--layout", str(BatchDir(out / name).layout_path),
                            "--registry", str(registry), "--json"))
    return mark(marker, report)


def handheld_photos(out: Path, folder: str, jobs: list[tuple[str, int, int, int]], named_by_id: bool) -> Path:
    """Handheld photos of (kind, field, slot, seed) of the factory batch; kind "other_film"
    photographs the same laser job etched into another film. Named by label id (a query
    set's input) or by number, with the truth in truth.csv."""
    from fabrication.sim.field_camera import capture_label
    from fabrication.sim.film import EtchedFilm

    target = out / folder
    if (target / "truth.csv").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    layout = BatchDir(out / "factory").layout()
    genuine = EtchedFilm.load(BatchDir(out / "factory").film_path)
    other = EtchedFilm(genuine.seed + 1000, genuine.segments, genuine.style)
    rows = []
    counts: dict[str, int] = {}
    for n, (kind, field, slot, seed) in enumerate(jobs):
        image, truth = capture_label(other if kind == "other_film" else genuine, layout, field, slot, seed)
        label_id = truth["label_id"]
        counts[label_id] = counts.get(label_id, 0) + 1
        name = f"{label_id}_{counts[label_id]}.jpg" if named_by_id else f"{n:05d}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        (target / name).write_bytes(data.tobytes())
        rows.append((name, kind, label_id, json.dumps(truth["corners_px"])))
    with replacing(target / "truth.csv") as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows([("photo", "kind", "label_id", "corners_px"), *rows])
    return target


def photo_jobs(layout, fields: dict[str, list[int]], counts: dict[str, int], seed: int):
    """(kind, field, slot, seed) for `counts[kind]` photos of labels of `fields[kind]`."""
    rng = np.random.default_rng(seed)
    jobs = []
    for kind, count in counts.items():
        pool = [(f, s) for f in fields[kind] for s in range(layout.labels_per_field)]
        for i in rng.choice(len(pool), count, replace=count > len(pool)):
            jobs.append((kind, *pool[int(i)], int(rng.integers(1 << 30))))
    return jobs


def photo_crops(folder: Path, templates) -> list[tuple[dict, np.ndarray | None, str | None]]:
    """Each photo's truth row, the device's crop of its label (None when the device could
    not cut it the right way up) and the glyph the templates read."""
    from edge_app.verify import CaptureLimits, find_labels

    limits = CaptureLimits()
    out = []
    for row in csv.DictReader((folder / "truth.csv").open()):
        image = cv2.imread(str(folder / row["photo"]), cv2.IMREAD_COLOR)
        found = find_labels(image, limits, templates)
        centre = np.mean(json.loads(row["corners_px"]), axis=0)
        near = [lb for lb in found.labels if np.linalg.norm(np.mean(lb.corners, axis=0) - centre) < 60]
        label = near[0] if near and near[0].orientation == "glyph" else None
        out.append((row, label.crop if label else None, label.glyph.pattern if label else None))
    return out


def embed(runner, crops: list[np.ndarray]) -> np.ndarray:
    from edge_app.preprocess import preprocess_batch

    return np.concatenate([runner.run(preprocess_batch(crops[i:i + 64], runner.preprocess)).embedding
                           for i in range(0, len(crops), 64)])


def shard_scores(runner, enrolled: tuple[np.ndarray, np.ndarray, np.ndarray], photos: list
                 ) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """For each readable photo: its truth row, and its scores against the enrolled labels
    of the pattern its glyph reads (with those labels' ids)."""
    vectors, ids, patterns = enrolled
    usable = [(row, crop, glyph) for row, crop, glyph in photos if crop is not None]
    out = []
    for (row, _, glyph), e in zip(usable, embed(runner, [crop for _, crop, _ in usable]), strict=True):
        shard = patterns == glyph
        out.append((row, vectors[shard] @ e, ids[shard]))
    return out


def compare_models(bundles: dict[str, Path], registry: Path, calibration: Path, test: Path, far: float) -> dict:
    """Each model's fingerprints of the enrolled crops and of the photos' crops, the pattern
    read from the glyph templates (so a model that does not know the glyphs is measured
    too), a threshold set for `far` from the calibration photos' same-pattern comparisons,
    and the test photos' decisions at it."""
    from edge_app.bundle import load_bundle
    from edge_app.runtime import ModelRunner
    from fabrication.registry import Registry
    from trainer.data import RegistryDataset
    from trainer.metrics import confident_threshold, device_threshold

    templates = load_bundle(next(iter(bundles.values())), check=False).templates
    crops = RegistryDataset(registry)
    with Registry(registry) as db:
        records = db.labels(status="enrolled")
    photos = {"calibration": photo_crops(calibration, templates), "test": photo_crops(test, templates)}
    report = {}
    for name, bundle in bundles.items():
        runner = ModelRunner.from_bundle(bundle, "int8", check=False)
        enrolled = (embed(runner, [cv2.imread(str(crops.crops[r.label_id][0]), cv2.IMREAD_COLOR) for r in records]),
                    np.array([r.label_id for r in records]), np.array([r.pattern for r in records]))
        impostor = np.concatenate([scores[ids != row["label_id"]]
                                   for row, scores, ids in shard_scores(runner, enrolled, photos["calibration"])])
        threshold = device_threshold(confident_threshold(impostor, far))
        kinds: dict[str, dict[str, int]] = {}
        for row, _, _ in photos["test"]:
            kinds.setdefault(row["kind"], {"photos": 0, "unreadable": 0, "accepted": 0, "accepted_as_itself": 0})
            kinds[row["kind"]]["photos"] += 1
        for row, _, glyph in photos["test"]:
            kinds[row["kind"]]["unreadable"] += glyph is None
        for row, scores, ids in shard_scores(runner, enrolled, photos["test"]):
            accepted = bool(len(scores) > 0 and scores.max() >= threshold)
            kinds[row["kind"]]["accepted"] += accepted
            kinds[row["kind"]]["accepted_as_itself"] += bool(accepted and ids[scores.argmax()] == row["label_id"])
        report[name] = {"threshold": round(float(threshold), 4), "impostor_comparisons": int(len(impostor)),
                        "kinds": kinds}
    return report


def run(out: Path, size: Size, scratch: bool) -> dict:
    from fabrication.registry import Registry

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    puf("patterns", str(GLYPHS), "--out", str(out / "patterns.json"), "--sheet", str(out / "glyphs.png"))
    make_batch(out, "train", size.train_fields, film_seed=501)
    make_batch(out, "factory", size.factory_fields, film_seed=502)
    timings["make batches (design, etch, photograph)"] = time.perf_counter() - started

    t0 = time.perf_counter()
    train_registry, factory_registry = out / "train.sqlite", out / "registry.sqlite"
    segmented = {"train": segment(out, "train", train_registry), "factory": segment(out, "factory", factory_registry)}
    timings["segment"] = time.perf_counter() - t0
    layout = BatchDir(out / "factory").layout()
    fields = list(range(layout.fields_per_batch))
    enrolled_fields = fields[:-size.held_out_fields]
    calib_never, test_never = fields[-size.held_out_fields:][::2], fields[-size.held_out_fields:][1::2]

    # fine-tuning starts from trained features: a quarter of the from-scratch learning rate keeps them;
    # "head only" keeps the shipped fingerprint exactly and learns only to read the new glyphs
    shipped = str(ROOT / "models" / "default")
    runs = {"head only": ["--init", shipped, "--set", "train_only=pattern_head"],
            "fine-tuned": ["--init", shipped, "--set", "lr=0.0005"]}
    if scratch:
        runs["from scratch"] = []
    bundles = {}
    for name, extra in runs.items():
        run_dir, bundle = out / "runs" / name.replace(" ", "_"), out / "bundles" / name.replace(" ", "_")
        t0 = time.perf_counter()
        if not (out / f"{run_dir.name}.trained.json").exists():
            mark(out / f"{run_dir.name}.trained.json", json.loads(puf(
                "train", str(run_dir), "--config", str(ROOT / "trainer" / "configs" / "edge.toml"),
                "--data", str(train_registry), "--steps", str(size.steps), "--batch-size", str(size.batch_size),
                "--set", f"eval_every={max(size.steps // 3, 1)}", *extra, "--json")))
        timings[f"train {name} ({size.steps} steps)"] = time.perf_counter() - t0
        if not (bundle / "manifest.json").exists():
            puf("export", str(run_dir), "--out", str(bundle), "--formats", "int8,onnx", "--json")
        bundles[name] = bundle

    keys = out / "keys"
    if not (keys / "factory.key").exists():
        puf("keygen", str(keys / "factory"))
    trusted = out / "trusted"
    trusted.mkdir(exist_ok=True)
    shutil.copy(keys / "factory.pub", trusted / "factory.pub")
    with Registry(factory_registry) as registry:  # the last fields are never enrolled
        held = [lb.label_id for f in fields[-size.held_out_fields:] for lb in registry.labels(field=f)
                if lb.status == "found"]
        registry.set_status(held, "held_out")
    t0 = time.perf_counter()
    enrolled = {}
    for name, bundle in bundles.items():
        marker = out / f"{bundle.name}.enrolled.json"
        enrolled[name] = json.loads(marker.read_text()) if marker.exists() else mark(marker, json.loads(puf(
            "enroll", "--bundle", str(bundle), "--labels", str(factory_registry), "--key",
            str(keys / "factory.key"), "--json")))
    timings["enroll"] = time.perf_counter() - t0

    calibration = handheld_photos(out, "recaptures", photo_jobs(
        layout, {"genuine": enrolled_fields, "never_enrolled": calib_never},
        {"genuine": size.calibration_photos, "never_enrolled": size.calibration_photos}, seed=11), named_by_id=True)
    test = handheld_photos(out, "field_photos", photo_jobs(
        layout, {"genuine": enrolled_fields, "never_enrolled": test_never, "other_film": enrolled_fields},
        {"genuine": size.test_photos, "never_enrolled": size.test_photos // 2,
         "other_film": size.test_photos - size.test_photos // 2}, seed=12), named_by_id=False)

    t0 = time.perf_counter()
    queries = json.loads(puf("queries", str(calibration), "--out", str(out / "queries"), "--bundle",
                             str(bundles["head only"]), "--registry", str(factory_registry), "--json"))
    evaluation = {}
    for name, bundle in bundles.items():
        evaluation[name] = json.loads(puf("evaluate", "--bundle", str(bundle), "--queries", str(out / "queries"),
                                          "--far", str(size.far), "--frr-bound", str(size.frr_bound),
                                          "--key", str(keys / "factory.key"),
                                          "--out", str(out / f"evaluate_{bundle.name}"), "--json"))
    timings["queries + evaluate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    photos = sorted(test.glob("*.jpg"))
    verified = {}
    for name, bundle in bundles.items():
        report = json.loads(puf("verify", *map(str, photos), "--bundle", str(bundle), "--trusted-keys", str(trusted),
                                "--json", ok=(0, 1, 3)))  # 1: some counterfeit, 3: some unreadable
        verified[name] = score_verdicts(test, report["verdicts"])
    timings["verify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compared = compare_models({**bundles, "shipped (no fine-tuning)": ROOT / "models" / "default"},
                              factory_registry, calibration, test, size.far)
    timings["compare models"] = time.perf_counter() - t0
    return {"size": size.__dict__, "film": "coarse (9 um grains, contrast 0.5)",
            "glyphs": str(GLYPHS.relative_to(ROOT)),
            "segmented": {k: {"labels": v["labels"], "fields": v["fields"]} for k, v in segmented.items()},
            "enrolled": {k: v["labels_total"] for k, v in enrolled.items()},
            "queries": {k: v for k, v in queries.items() if not isinstance(v, list)},
            "thresholds": {k: v["decision"] for k, v in evaluation.items()},
            "verify": verified, "compare": compared,
            "timings_s": {k: round(v, 1) for k, v in timings.items()}, "cpu": os.cpu_count()}


def score_verdicts(folder: Path, verdicts: list[dict]) -> dict:
    """The verdict on each photo's own label against its truth, counted by kind."""
    truth = {row["photo"]: row for row in csv.DictReader((folder / "truth.csv").open())}
    by_photo: dict[str, list[dict]] = {}
    for verdict in verdicts:
        by_photo.setdefault(Path(verdict["source"].split("#")[0]).name, []).append(verdict)
    kinds: dict[str, dict[str, int]] = {}
    for photo, row in truth.items():
        centre = np.mean(json.loads(row["corners_px"]), axis=0)
        own = [v for v in by_photo.get(photo, []) if v.get("corners_px") and
               np.linalg.norm(np.mean(v["corners_px"], axis=0) - centre) < 60]
        verdict = own[0] if own else {"verdict": "unreadable"}
        k = kinds.setdefault(row["kind"], {"photos": 0, "genuine": 0, "as_itself": 0, "counterfeit": 0,
                                           "unreadable": 0})
        k["photos"] += 1
        k[verdict["verdict"]] += 1
        k["as_itself"] += verdict["verdict"] == "genuine" and verdict.get("label_id") == row["label_id"]
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  python tools/bench_own_labels.py --out /tmp/own\n"
                                            "  python tools/bench_own_labels.py --out /tmp/own-s --quick")
    parser.add_argument("--out", type=Path, required=True, help="working folder (resumes what it finds there)")
    parser.add_argument("--quick", action="store_true", help="every step at a tiny size")
    parser.add_argument("--scratch", action="store_true", help="also train from scratch, the same steps")
    parser.add_argument("--steps", type=int, help="training steps (default: 600, quick 6)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    if args.steps:
        size = Size(**{**size.__dict__, "steps": args.steps})
    report = run(args.out, size, args.scratch)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
