"""The handheld app, measured in the app: the time from pressing CAPTURE to the verdict
drawn on the screen, and screenshots of every screen at the Pi's 800x480.

    .venv/bin/python tools/bench_app.py                          # 30 captures, prints the figures
    .venv/bin/python tools/bench_app.py --screenshots docs/      # and docs/app_*.png
    .venv/bin/python tools/bench_app.py --designed               # the test model (no shipped bundle needed)
    puf demo --out demo_out                                      # the demo's batch, bundle and handheld photos
    .venv/bin/python tools/bench_app.py --demo demo_out --screenshots docs/   # docs/explanation/app.md's screenshots

With --demo, the app verifies with the demo's signed bundle (its whole batch enrolled:
2,160 labels by default) and photographs: the demo's handheld photos of enrolled labels
and of never-enrolled ones (held out, another film, clones) by turns, and for the
screenshots a genuine, a never-enrolled and a blurred genuine photo chosen from them by
the truth their names record (`trainer.harness.demo_queries`: NNNN_KIND_LABELID.jpg). Without
it:

1. a simulated film (`trainer.simdata`) whose first field is enrolled (with thumbnails)
   into a copy of the shipped model's bundle (`trainer.enroll`), signed with a fresh key;
2. handheld photos (`fabrication.sim.field_camera`) of enrolled labels (genuine) and of the
   second field's labels (never enrolled: counterfeit), alternately, in a folder that the
   app's file camera captures in name order;
3. the real app, started under Xvfb (SDL's offscreen driver where Xvfb is not installed)
   and driven by `tools/app_driver.py`, presses CAPTURE N times; the app times each
   press to the first frame drawn with the verdict (`VerdictController.capture_ms`), beside the
   verifier's own time for the photo (segment + model + search).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

THUMBNAIL_PX = 96  # enrolled labels' pictures, shown beside a genuine capture
SCREENS = ("preview", "genuine", "counterfeit", "retake", "history", "settings")
GERMAN = "genuine_de"  # the genuine verdict again, shown in German (docs/app_genuine_de.png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", type=int, default=30, help="presses of CAPTURE to time (default 30)")
    from edge_app.runtime import shipped_bundle

    parser.add_argument("--bundle", type=Path, default=shipped_bundle(), help="exported model bundle")
    parser.add_argument("--designed", action="store_true", help="use the designed test model instead")
    parser.add_argument("--film-seed", type=int, default=901)
    parser.add_argument("--demo", type=Path, metavar="DIR",
                        help="use the bundle, trusted key and handheld photos of 'puf demo --out DIR'")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="also write DIR/app_<screen>.png")
    parser.add_argument("--out", type=Path, default=Path("bench_app.json"))
    args = parser.parse_args(argv)

    from app_driver import display, run_script  # beside this script

    work = Path(tempfile.mkdtemp(prefix="bench_app."))
    if args.demo:
        device = demo_device(args.demo)
        photos = demo_photos(work / "photos", device, args.captures)
    else:
        device = enrolled_device(work, args)
        photos = write_photos(work / "photos", device, args.captures)
    home = work / "home"
    options = {"home": home, "bundle": device["bundle"], "trusted_keys": device["trusted"],
               "camera": f"file:{photos}"}
    steps = [{"do": "wait_ready"}]
    for i in range(args.captures):
        steps += [{"do": "capture"}, {"do": "record", "name": f"capture{i}"},
                  {"do": "press", "screen": "verdict", "id": "next"}]
    with display(work / "display") as env:
        result = run_script({"options": options, "steps": steps}, work / "bench", env, timeout=600)
        if result["error"]:
            print(result["error"], result["stderr"], file=sys.stderr)
            return 1
        if args.screenshots:
            shoot(args.screenshots, work, device, {**options, "camera": f"file:{device['showcase']}"}, env)
    outcomes = [result["records"][f"capture{i}"]["outcome"] for i in range(args.captures)]
    kinds = [o["kind"] for o in outcomes]
    capture_ms, verify_ms = np.array(result["capture_ms"]), np.array([o["verify_ms"] for o in outcomes])
    figures = {
        "captures": args.captures,
        "model": str(device["bundle"]) if args.demo else "designed test model" if args.designed else str(args.bundle),
        "labels_enrolled": device["enrolled"],
        "verdicts": {kind: kinds.count(kind) for kind in sorted(set(kinds))},
        "wrong": sum(o["kind"] != expected for o, expected in zip(outcomes, device["expected"], strict=False)),
        "capture_to_verdict_ms": summary(capture_ms),
        "verify_ms": summary(verify_ms),
        "ui_and_journal_ms": summary(capture_ms - verify_ms),
        "display": "Xvfb, Mesa llvmpipe" if shutil.which("Xvfb") else "SDL offscreen, Mesa llvmpipe",
        "window": "800x480", "cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.write_text(json.dumps({**figures, "capture_ms": result["capture_ms"]}, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


def summary(values: np.ndarray) -> dict:
    return {"median": round(float(np.median(values)), 1), "p90": round(float(np.percentile(values, 90)), 1),
            "max": round(float(values.max()), 1)}


def enrolled_device(work: Path, args: argparse.Namespace) -> dict:
    """A signed bundle with the first field of a simulated film enrolled, its trusted key,
    and the film to photograph."""
    import cv2

    from trainer.enroll import EnrollOptions, enroll
    from trainer.keys import generate_keypair, load_private_key
    from trainer.simdata import SimSpec, field_captures, make_film, make_layout

    spec = SimSpec("APP", args.film_seed, 2, 1, microscope_shots=1, handheld_shots=0)
    layout = make_layout(spec)
    film = make_film(spec, layout)
    crops, lines = work / "crops", []
    (crops / "crops").mkdir(parents=True)
    for label_id, _, crop in field_captures(spec, layout, film, 0):
        cv2.imwrite(str(crops / "crops" / f"{label_id}.png"), crop)
        lines.append(f"{label_id},{layout.pattern_of(0, int(label_id[-2:]))}")
    (crops / "labels.csv").write_text("label_id,pattern\n" + "\n".join(lines) + "\n")
    bundle = work / "bundle"
    if args.designed:
        from trainer.harness.designed_model import write_model_bundle

        write_model_bundle(bundle, [cv2.imread(str(p)) for p in sorted((crops / "crops").glob("*.png"))])
    else:
        shutil.copytree(args.bundle, bundle, ignore=shutil.ignore_patterns("shards"))
    private, public, _ = generate_keypair(work / "keys" / "bench")
    (work / "trusted").mkdir()
    shutil.copy(public, work / "trusted" / "bench.pub")
    report = enroll(bundle, crops, load_private_key(private), EnrollOptions(thumbnails=THUMBNAIL_PX), progress=False)
    enrolled = sorted(line.split(",")[0] for line in lines)
    return {"bundle": bundle, "trusted": work / "trusted", "layout": layout, "film": film,
            "enrolled": report.labels_added, "enrolled_ids": enrolled}


def write_photos(folder: Path, device: dict, count: int) -> Path:
    """`count` handheld photos, genuine and never enrolled by turns (named in capture order),
    and a showcase folder for the screenshots: a genuine label near the guide box, a
    never-enrolled one, a blurred one."""
    import cv2

    from fabrication.sim.field_camera import capture_label

    layout, film = device["layout"], device["film"]
    enrolled_slots = [int(label_id[-2:]) for label_id in device["enrolled_ids"]]
    folder.mkdir(parents=True)
    device["expected"] = []
    for i in range(count):
        genuine = i % 2 == 0
        slot = enrolled_slots[(i // 2) % len(enrolled_slots)] if genuine else (i // 2) % layout.labels_per_field
        image, _ = capture_label(film, layout, 0 if genuine else 1, slot, seed=100 + i)
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
        device["expected"].append("genuine" if genuine else "counterfeit")
    showcase = folder.parent / "showcase"
    showcase.mkdir()
    centred = min(range(40), key=lambda seed: off_centre(capture_label(film, layout, 0, enrolled_slots[3], seed)))
    cv2.imwrite(str(showcase / "1_genuine.png"), capture_label(film, layout, 0, enrolled_slots[3], centred)[0])
    enrolled_patterns = {layout.pattern_of(0, slot) for slot in enrolled_slots}
    lookalike = next(s for s in range(layout.labels_per_field) if layout.pattern_of(1, s) in enrolled_patterns)
    cv2.imwrite(str(showcase / "2_counterfeit.png"), capture_label(film, layout, 1, lookalike, 7)[0])
    blurred = capture_label(film, layout, 0, enrolled_slots[1], 8)[0]
    cv2.imwrite(str(showcase / "3_blurred.png"), cv2.GaussianBlur(blurred, (0, 0), 4))
    device["showcase"] = showcase
    return folder


def demo_device(folder: Path) -> dict:
    """The signed bundle, trusted keys and handheld photos `puf demo --out FOLDER` left."""
    from edge_app.bundle import load_bundle
    from edge_app.errors import PufError

    bundle, trusted, photos = folder / "bundle", folder / "trusted_keys", folder / "handheld"
    for path in (bundle / "manifest.json", trusted, photos):
        if not path.exists():
            raise PufError(f"{folder} is not the output of 'puf demo --out {folder}': no {path}")
    loaded = load_bundle(bundle, trusted)
    return {"bundle": bundle, "trusted": trusted, "photos": photos, "loaded": loaded,
            "enrolled": len(loaded.shards)}


def demo_kind(photo: Path) -> tuple[str, str]:
    """(kind, label id) a demo photo's name records: NNNN_KIND_LABELID.jpg, KIND one of
    `trainer.harness.demo_queries.KINDS` (held_out and other_film hold an underscore)."""
    from trainer.harness.demo_queries import KINDS

    rest = photo.stem.split("_", 1)[1]
    kind = next(kind for kind in KINDS if rest.startswith(kind + "_"))
    return kind, rest[len(kind) + 1:]


def demo_photos(folder: Path, device: dict, count: int) -> Path:
    """`count` of the demo's photos, genuine and never enrolled by turns (the never-enrolled
    kinds in turn too), linked in capture order; and the showcase for the screenshots: a
    genuine photo read as its own label, the label nearest the middle; a never-enrolled
    label of an enrolled pattern (the close call) read as counterfeit; a genuine photo
    blurred, read as a retake. Each is checked with the device's verifier first."""
    import cv2

    from edge_app.verify import Verifier
    from trainer.harness.demo_queries import EXPECTED

    by_kind: dict[str, list[Path]] = {}
    for photo in sorted(device["photos"].glob("*.jpg")):
        by_kind.setdefault(demo_kind(photo)[0], []).append(photo)
    never = [photo for group in zip(*(by_kind.get(k, []) for k in ("held_out", "other_film", "clone")), strict=False)
             for photo in group]
    if not by_kind.get("genuine") or not never:
        raise RuntimeError(f"{device['photos']} holds no genuine or no never-enrolled photos")
    folder.mkdir(parents=True)
    device["expected"] = []
    for i in range(count):
        photo = by_kind["genuine"][i // 2 % len(by_kind["genuine"])] if i % 2 == 0 else never[i // 2 % len(never)]
        (folder / f"{i:03d}.jpg").symlink_to(photo.resolve())
        device["expected"].append(EXPECTED[demo_kind(photo)[0]])
    verifier = Verifier(device["loaded"])

    def read(image) -> list:
        return verifier.verify_image(image, "showcase")

    genuine = []
    for photo in by_kind["genuine"][:40]:
        image = cv2.imread(str(photo))
        verdicts = read(image)
        if len(verdicts) == 1 and verdicts[0].label_id == demo_kind(photo)[1]:
            centre = np.mean(verdicts[0].corners_px, axis=0) - np.array(image.shape[1::-1]) / 2
            genuine.append((float(np.hypot(*centre)), photo))
    held = [(photo, verdicts[0]) for photo in by_kind.get("held_out", never)[:40]
            for verdicts in [read(cv2.imread(str(photo)))] if [v.verdict for v in verdicts] == ["counterfeit"]]
    held.sort(key=lambda item: item[1].score is None)  # its pattern is enrolled first: the close call
    if not genuine or not held:
        raise RuntimeError("no demo photo reads as its truth: is the bundle the demo's own?")
    genuine.sort()
    retake = next((cv2.GaussianBlur(cv2.imread(str(photo)), (0, 0), 4) for _, photo in genuine[1:]
                   if [v.verdict for v in read(cv2.GaussianBlur(cv2.imread(str(photo)), (0, 0), 4))]
                   == ["unreadable"]), None)
    if retake is None:
        raise RuntimeError("no blurred demo photo reads as a retake")
    showcase = folder.parent / "showcase"
    showcase.mkdir()
    shutil.copy(genuine[0][1], showcase / "1_genuine.jpg")
    shutil.copy(held[0][0], showcase / "2_counterfeit.jpg")
    cv2.imwrite(str(showcase / "3_blurred.png"), retake)
    device["showcase"] = showcase
    print("showcase:", genuine[0][1].name, held[0][0].name, "and a blurred genuine photo",
          file=sys.stderr)
    return folder


def off_centre(capture: tuple) -> float:
    image, truth = capture
    centre = np.mean(truth["corners_px"], axis=0)
    return float(np.hypot(*(centre - np.array(image.shape[1::-1]) / 2)))


def shoot(folder: Path, work: Path, device: dict, options: dict, env: dict) -> None:
    """Every screen at 800x480, the history holding the benchmark's captures too."""
    from app_driver import run_script  # beside this script

    shots = {name: str(Path(folder) / f"app_{name}.png") for name in SCREENS}
    steps = [{"do": "wait_ready"}, {"do": "screenshot", "path": shots["preview"]}]
    for name in ("genuine", "counterfeit", "retake"):
        steps += [{"do": "capture"}, {"do": "screenshot", "path": shots[name]},
                  {"do": "press", "screen": "verdict", "id": "next"}]
    steps += [{"do": "show", "screen": "history"}, {"do": "screenshot", "path": shots["history"]},
              {"do": "show", "screen": "settings"}, {"do": "screenshot", "path": shots["settings"]}]
    result = run_script({"options": options, "steps": steps}, work / "screens", env)
    if result["error"]:
        raise RuntimeError(result["error"] + result["stderr"])
    shots[GERMAN] = str(Path(folder) / f"app_{GERMAN}.png")  # a fresh device: the genuine photo is its first capture
    german = {**options, "home": work / "home_de", "language": "de"}
    steps = [{"do": "wait_ready"}, {"do": "capture"}, {"do": "screenshot", "path": shots[GERMAN]}]
    result = run_script({"options": german, "steps": steps}, work / "screens_de", env)
    if result["error"]:
        raise RuntimeError(result["error"] + result["stderr"])
    print("screenshots:", ", ".join(shots.values()), file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
