"""`puf demo`: the factory line on the simulated factory, start to end.

It runs the real verbs one after another on a fresh folder (design, etch into the
simulated film, photograph with the simulated microscope, segment into label crops,
then, where the trainer and device extras are installed, sign and enroll the labels
with the shipped model and verify handheld photos: of enrolled labels, and of lookalike
labels etched with the same design into another film), and draws what a reader wants to
see: one field beside its ground truth, the paper's five-power series, and each field's
segmentation.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from edge_app.errors import PufError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder to work in (default demo_out)")
    parser.add_argument("--fields", default="8x5", metavar="COLSxROWS",
                        help="fields in the demo batch (default 8x5 = 40; the full line is 20x10)")
    parser.add_argument("--keep", action="store_true", help="keep what an earlier demo left in --out")


def run_verb(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
    """Run another `puf` verb in this process, as a user would type it."""
    from edge_app.cli import build_parser

    args = build_parser().parse_args(argv)
    status = args._verb.run(args)
    if status not in ok:
        raise PufError(f"'puf {' '.join(argv)}' failed with status {status}")


def handheld_photos(batch_dir: Path, out: Path, count: int = 2) -> list[Path]:
    """Handheld photos of `count` labels of the batch (genuine), and of the same labels
    etched with the same design into another film (lookalike counterfeits)."""
    import cv2

    from edge_app.layout import BatchLayout
    from fabrication.sim.field_camera import capture_label
    from fabrication.sim.film import EtchedFilm
    from fabrication.sim.laser import engrave_layout

    layout = BatchLayout.load(batch_dir / "layout.json")
    genuine = EtchedFilm.load(batch_dir / "sim" / "film.npz")
    lookalike = EtchedFilm(genuine.seed + 1)
    engrave_layout(lookalike, layout, 128.0)
    out.mkdir(parents=True, exist_ok=True)
    photos = []
    for kind, film in (("genuine", genuine), ("counterfeit", lookalike)):
        for slot in range(count):
            image, truth = capture_label(film, layout, 0, slot, seed=101 + slot)
            path = out / f"{kind}_{truth['label_id']}.jpg"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            photos.append(path)
    return photos


def enroll_and_verify(out: Path, batch_dir: Path) -> None:
    """Sign and enroll the batch with the shipped model, then verify handheld photos."""
    import shutil as sh

    from edge_app.runtime import default_bundle

    keys, bundle, trusted = out / "keys", out / "bundle", out / "trusted_keys"
    for folder in (keys, bundle, trusted):
        sh.rmtree(folder, ignore_errors=True)
    sh.copytree(default_bundle(), bundle)
    steps = [
        ["keygen", str(keys / "factory")],
        ["enroll", "--bundle", str(bundle), "--labels", str(out / "registry.sqlite"),
         "--key", str(keys / "factory.key")],
    ]
    for argv in steps:
        print(f"\n== puf {' '.join(argv)}")
        run_verb(argv)
    trusted.mkdir()
    sh.copy(keys / "factory.pub", trusted / "factory.pub")
    photos = handheld_photos(batch_dir, out / "photos")
    argv = ["verify", *map(str, photos), "--bundle", str(bundle), "--trusted-keys", str(trusted)]
    print(f"\n== puf verify {out / 'photos'}/*.jpg --bundle {bundle} --trusted-keys {trusted}")
    run_verb(argv, ok=(0, 1, 3))  # 1: some counterfeit, 3: some unreadable; both expected here


def field_beside_truth(batch_dir: Path, field: int, out: Path) -> None:
    """The photographed field, and the same field with the true label outlines and ids."""
    import json

    import cv2
    import numpy as np

    image = cv2.imread(str(batch_dir / "fields" / f"field_{field:04d}.tif"), cv2.IMREAD_COLOR)
    truth = json.loads((batch_dir / "fields" / f"field_{field:04d}.truth.json").read_text())
    overlay = image.copy()
    for label in truth["labels"]:
        corners = np.array(label["corners_px"], np.float32)
        colour = (80, 255, 255) if label["whole"] else (60, 60, 255)
        cv2.polylines(overlay, [np.round(corners).astype(np.int32)], True, colour, 3, cv2.LINE_AA)
        x, y = corners.min(0)
        cv2.putText(overlay, f"{label['label_id']} {label['pattern']}", (int(x) + 6, max(int(y) - 10, 30)),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.0, colour, 2, cv2.LINE_AA)
    side = np.hstack([image, np.full((image.shape[0], 16, 3), 255, np.uint8), overlay])
    cv2.imwrite(str(out), cv2.resize(side, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))


def power_series(out: Path, seed: int = 11) -> None:
    """One label etched at each of the paper's powers (7, 17, 38, 73, 128 mW) and beyond,
    photographed by the simulated microscope, side by side."""
    import cv2

    from edge_app.layout import BatchLayout
    from fabrication.calibration import StageCalibration
    from fabrication.laser_response import line_width_um
    from fabrication.sim.film import EtchedFilm
    from fabrication.sim.laser import engrave_layout
    from fabrication.sim.microscope import MicroscopeModel, SimulatedMicroscope

    powers = (7.0, 17.0, 38.0, 73.0, 128.0, 400.0)
    layout = BatchLayout("POWER", ("A",) * len(powers), label_cols=len(powers), label_rows=1,
                         field_cols=1, field_rows=1)
    film = EtchedFilm(seed)
    engrave_layout(film, layout, powers)
    model = MicroscopeModel(width_px=len(powers) * 420, height_px=440, stage_error_um=0.0,
                            stage_rotation_deg=0.0, slip_probability=0.0, defocus_px=(0.6, 0.6),
                            exposure_range=(1.0, 1.0))
    microscope = SimulatedMicroscope(film, layout, StageCalibration(), seed, model)
    microscope.move_to(*layout.field_center_um(0))
    image = microscope.snap().image
    step = image.shape[1] // len(powers)
    for slot, power in enumerate(powers):
        text = f"{power:g} mW: {line_width_um(power):.0f} um"
        cv2.putText(image, text, (slot * step + 20, 425), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                    (255, 255, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(out), image)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out: Path = args.out
    batch_dir = out / "B0001"
    if batch_dir.exists() and not args.keep:
        shutil.rmtree(batch_dir)
        for suffix in ("", "-wal", "-shm"):
            (out / f"registry.sqlite{suffix}").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    steps = [
        ("design", ["design", str(batch_dir), "--fields", args.fields, "--batch-id", "B0001", "--force"]),
        ("etch", ["etch", str(batch_dir), "--sim"]),
        ("photograph", ["photograph", str(batch_dir), "--sim"]),
        ("segment", ["segment", str(batch_dir), "--overlay"]),
    ]
    timings = {}
    for name, argv in steps:
        print(f"\n== puf {' '.join(argv)}")
        t0 = time.perf_counter()
        run_verb(argv)
        timings[name] = time.perf_counter() - t0
    from edge_app.cli import installed_verbs

    ready = {verb.name for verb in installed_verbs()[0]}
    if {"keygen", "enroll", "verify"} <= ready:
        t0 = time.perf_counter()
        enroll_and_verify(out, batch_dir)
        timings["enroll+verify"] = time.perf_counter() - t0
    else:
        print("\n(enroll and verify skipped: they need pip install 'puf-labels[trainer,device]')")
    print("\n== pictures")
    field_beside_truth(batch_dir, 0, out / "field_vs_truth.png")
    power_series(out / "power_series.png")
    print(f"\n{'step':<12} {'seconds':>8}")
    for name, seconds in timings.items():
        print(f"{name:<12} {seconds:8.1f}")
    print(f"{'total':<12} {time.perf_counter() - started:8.1f}")
    print(f"\nbatch:         {batch_dir}  (layout.json, cad/, laser/, stage/, sim/, fields/, crops/)")
    print(f"registry:      {out / 'registry.sqlite'}")
    print(f"field + truth: {out / 'field_vs_truth.png'}")
    print(f"power series:  {out / 'power_series.png'}")
    print(f"segmentation:  {batch_dir / 'overlays'}")
    if "enroll+verify" in timings:
        print(f"signed bundle: {out / 'bundle'}  (trusted key: {out / 'trusted_keys'})")
        print(f"photos:        {out / 'photos'}")
    return 0
