"""`puf demo`: the factory line on the simulated factory, start to end, and the field checks.

It runs the real verbs one after another on a fresh folder: design a batch, etch it into
the simulated film, photograph it with the simulated microscope, segment it into label
crops; then, where the verbs that enroll and verify are installed, hold out the batch's last
fields (never enrolled), sign and enroll the rest with the shipped model, and verify
handheld photos of four kinds with the device's own pipeline (`trainer.harness.demo_queries`):
genuine captures of enrolled labels, held-out labels, the same laser job etched into
another film, and clones (printed copies). It prints the results and times beside the
paper's figures and draws what a reader wants to see (`trainer.harness.demo_report`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge_app.bundle_format import Manifest
from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from edge_app.runtime import default_bundle
from fabrication.batch_dir import BatchDir
from fabrication.calibration import StageCalibration
from fabrication.laser_response import line_width_um
from fabrication.registry import Registry
from fabrication.sim.film import EtchedFilm, FilmStyle
from fabrication.sim.laser import engrave_layout
from fabrication.sim.microscope import MicroscopeModel, SimulatedMicroscope
from trainer.enroll import EnrollOptions, EnrollReport
from trainer.enroll import enroll as enroll_labels
from trainer.harness.demo_queries import plan_queries, run_queries
from trainer.harness.demo_report import draw_pictures, summarise
from trainer.harness.line import LINE, run_verb
from trainer.images import read_bgr
from trainer.keys import load_private_key

BATCH_ID = "B0001"
PICTURES = {"field": "demo_field.jpg", "genuine": "demo_genuine.jpg", "counterfeit": "demo_counterfeit.jpg",
            "clone": "demo_clone.jpg", "scores": "demo_scores.png"}


@dataclass(frozen=True)
class DemoOptions:
    """What `puf demo` runs: the folder, the batch's fields (COLSxROWS, 12 labels each), the
    handheld photos, the share of fields held out, the handheld photos' seed, the film's style,
    whether to keep what an earlier demo left, and a folder to copy the pictures into."""

    out: Path
    fields: str
    photos: int
    held_out: float
    seed: int
    film: str
    keep: bool
    figures: Path | None


def hold_out(registry_path: Path, fraction: float) -> dict:
    """Mark the labels of the batch's last fields held out (never enrolled)."""
    with Registry(registry_path) as registry:
        fields = [f.field for f in registry.fields(BATCH_ID)]
        count = min(len(fields) - 1, max(1, round(fraction * len(fields)))) if fraction > 0 else 0
        held = fields[len(fields) - count:] if count > 0 else []
        ids = [label.label_id for field in held for label in registry.labels(BATCH_ID, "found", field)]
        registry.set_status(ids, "held_out")
    return {"fields": held, "labels": len(ids)}


def enroll(out: Path, batch_dir: Path) -> EnrollReport:
    """A copy of the shipped bundle, a factory key, the batch enrolled and signed (by the
    domain function, `puf enroll`'s own: its report is wanted, not its printout)."""
    keys, bundle, trusted = out / "keys", out / "bundle", out / "trusted_keys"
    for folder in (keys, bundle, trusted):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(default_bundle(), bundle)
    print(f"\n== puf keygen {keys / 'factory'}")
    run_verb(["keygen", str(keys / "factory")])
    trusted.mkdir()
    shutil.copy(keys / "factory.pub", trusted / "factory.pub")
    print(f"\n== puf enroll --bundle {bundle} --labels {out / 'registry.sqlite'} --key {keys / 'factory.key'} "
          "--thumbnails 96")
    report = enroll_labels(bundle, out / "registry.sqlite", load_private_key(keys / "factory.key"),
                           EnrollOptions(thumbnails=96),  # the app shows the enrolled label beside the photo
                           progress=False)
    print(f"bundle {bundle}: {report.labels_total} labels, {report.bundle_bytes / 1e6:.1f} MB, "
          f"signed by {report.signed_by}, {report.seconds} s; skipped: {report.skipped or 'none'}")
    return report


def field_beside_truth(batch_dir: Path, field: int, out: Path) -> None:
    """The photographed field, and the same field with the true label outlines and ids."""
    batch = BatchDir(batch_dir)
    image = read_bgr(batch.field_path(field))
    truth = json.loads(batch.truth_path(field).read_text())
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


def _stats_ms(values: list[float | None]) -> dict:
    known = [v for v in values if v is not None]
    if not known:
        return {"median": None, "p90": None}
    return {"median": round(float(np.median(known)), 3), "p90": round(float(np.percentile(known, 90)), 3)}


def _line(options: DemoOptions, out: Path, batch_dir: Path, stages: dict) -> None:
    """design, etch, photograph, segment: the factory's verbs, timed."""
    if batch_dir.exists() and not options.keep:
        shutil.rmtree(batch_dir)
        for suffix in ("", "-wal", "-shm"):
            (out / f"registry.sqlite{suffix}").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    steps = [
        ("design", ["design", str(batch_dir), "--fields", options.fields, "--batch-id", BATCH_ID, "--force"]),
        ("etch", ["etch", str(batch_dir), "--sim", "--film-style", options.film]),
        ("photograph", ["photograph", str(batch_dir), "--sim"]),
        ("segment", ["segment", str(batch_dir), "--overlay"]),
    ]
    for name, argv in steps:
        print(f"\n== puf {' '.join(argv)}")
        t0 = time.perf_counter()
        run_verb(argv)
        stages[name] = round(time.perf_counter() - t0, 2)


def run_demo(options: DemoOptions) -> dict:
    """The line on a fresh folder, then (where the trainer and device extras are installed)
    the field checks; the report (`trainer.harness.demo_report.tables` prints it for people)."""
    if not 0 <= options.photos <= 100_000:
        raise PufError(f"--photos must be 0-100000, got {options.photos}")
    if not 0 <= options.held_out < 1:
        raise PufError(f"--held-out is a fraction of the fields, 0 to below 1; got {options.held_out}")
    FilmStyle.parse(options.film)  # refused before the line starts
    started = time.perf_counter()
    out = options.out
    batch_dir, registry_path, photos_dir = out / BATCH_ID, out / "registry.sqlite", out / "handheld"
    for stale in [photos_dir, *(out / name for name in PICTURES.values())]:
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    stages: dict = {}
    _line(options, out, batch_dir, stages)
    layout = BatchDir(batch_dir).layout()
    with Registry(registry_path) as registry:
        stages["segment_field_ms"] = _stats_ms([f.elapsed_ms for f in registry.fields(BATCH_ID)])
    report: dict = {
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "platform": platform.platform(), "load_average": os.getloadavg()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {"out": str(out), "fields": options.fields, "photos": options.photos,
                    "held_out": options.held_out, "seed": options.seed, "film": options.film},
        "batch": {"id": BATCH_ID, "fields": layout.fields_per_batch, "labels": layout.label_count},
        "stages": stages, "paths": {"batch": str(batch_dir), "registry": str(registry_path),
                                    "overlays": str(batch_dir / "overlays")},
    }
    checks = [LINE[name] for name in ("keygen", "enroll", "verify")]
    if not all(verb.available() for verb in checks):
        print(f"\n(enroll and verify skipped: they need {checks[1].install})")
    else:
        _field_checks(options, out, batch_dir, report)
    print("\n== pictures of the line")
    field_beside_truth(batch_dir, 0, out / "field_vs_truth.png")
    power_series(out / "power_series.png")
    report["pictures"] = {**report.get("pictures", {}), "field_vs_truth": str(out / "field_vs_truth.png"),
                          "power_series": str(out / "power_series.png")}
    if options.figures is not None:
        report["figures"] = _copy_figures(report["pictures"], options.figures)
    stages["total"] = round(time.perf_counter() - started, 2)
    return report


def _field_checks(options: DemoOptions, out: Path, batch_dir: Path, report: dict) -> None:
    """Hold out, enroll, photograph and verify the four kinds, summarise, draw."""
    stages, registry_path = report["stages"], out / "registry.sqlite"
    held = hold_out(registry_path, options.held_out)
    t0 = time.perf_counter()
    enrolled = enroll(out, batch_dir)
    stages["enroll"] = round(time.perf_counter() - t0, 2)
    with Registry(registry_path) as registry:
        labels = registry.labels(BATCH_ID)
    slots = {status: [(lb.field, lb.slot) for lb in labels if lb.status == status] for status in ("enrolled",
                                                                                                 "held_out")}
    report["batch"].update(enrolled=len(slots["enrolled"]), held_out=len(slots["held_out"]),
                           held_out_fields=held["fields"],
                           rejected=sum(lb.status in ("rejected", "missing") for lb in labels))
    bundle, trusted, photos_dir = out / "bundle", out / "trusted_keys", out / "handheld"
    threshold = Manifest.read(bundle).threshold
    if threshold is None:
        raise PufError(f"{bundle} has no calibrated threshold: the demo's evaluation did not set it")
    plan = plan_queries(slots["enrolled"], slots["held_out"], options.photos, options.seed)
    print(f"\n== handheld photos into {photos_dir}, verified against {bundle}")
    t0 = time.perf_counter()
    queries = run_queries(batch_dir, bundle, trusted, plan, photos_dir, options.seed)
    stages["queries"] = round(time.perf_counter() - t0, 2)
    report["photos"] = len(queries)
    report["summary"] = summarise(queries, threshold)
    report["enroll"] = {k: getattr(enrolled, k) for k in ("labels_added", "labels_total", "bundle_bytes",
                                                          "signed_by", "skipped", "seconds")}
    print("\n== pictures of the field checks")
    report["pictures"] = draw_pictures(out, batch_dir, registry_path, queries, threshold, PICTURES)
    report["paths"].update(bundle=str(bundle), trusted_keys=str(trusted), keys=str(out / "keys"),
                           handheld=str(photos_dir))
    report["try"] = [f"puf verify {photos_dir}/*.jpg --bundle {bundle} --trusted-keys {trusted}",
                     f"puf app --bundle {bundle} --trusted-keys {trusted} --camera file:{photos_dir}"]
    report["queries"] = [q.to_dict() for q in queries]


def _copy_figures(pictures: dict, folder: Path) -> dict:
    """The pictures in a documentation folder: photographs as JPEG, the chart as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    copied = {}
    for name, path in pictures.items():
        path = Path(path)
        target = folder / (path.name if name == "scores" else path.stem + ".jpg")
        if target.suffix == path.suffix:
            shutil.copy(path, target)
        elif not cv2.imwrite(str(target), read_bgr(path), [cv2.IMWRITE_JPEG_QUALITY, 88]):
            raise PufError(f"cannot write {target}")
        copied[name] = str(target)
    return copied
