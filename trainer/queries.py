"""`puf queries`: handheld photos of known labels -> the query set `puf evaluate` calibrates on.

A factory calibrates its threshold on real re-captures: an inspector's camera photographs
labels whose ids are known, and this module turns the photos into a folder data set
(`trainer.data`)::

    OUT/labels.csv               label_id,batch,pattern
    OUT/crops/LABEL_ID/hN.png    one canonical crop per photo (h: handheld)
    OUT/photos.csv               the ledger: every photo tried, what it gave or why not

Which label a photo shows comes from a CSV (``photo,label_id``; paths relative to the CSV)
or from the photo's name (``B0001-0007-03.jpg``, ``B0001-0007-03_2.jpg``). Each photo is
segmented as the device segments it (any rotation; the bundle's glyph templates turn the
crop upright) and the label nearest the photo's centre is cut. Its pattern is the
registry's when the registry knows the label, else the glyph's reading. Labels never
enrolled (held out, or counterfeits the factory made on purpose, named with ids of their
own) are as useful as enrolled ones: they are the impostor queries.

Photos it cannot use (unreadable, no label, orientation the glyph cannot settle, an id
that is no label id or one the registry's batch does not have, a glyph that contradicts
the registry) are reported and skipped. A photo is known by its content (sha256): a
re-run does not redo photos already cut, and retries the ones that failed.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_app.atomic_write import replacing
from edge_app.bundle_format import TEMPLATES
from edge_app.errors import PufError
from edge_app.layout import parse_label_id
from edge_app.orientation import PatternTemplates
from edge_app.segment import as_uint8, load_image
from edge_app.verify import CaptureLimits, find_labels
from fabrication.registry import Registry
from fabrication.segmentation.image_files import write_crop

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
LEDGER = "photos.csv"
_LEDGER_COLUMNS = ("photo", "sha256", "label_id", "pattern", "capture", "status", "reason")
_NUMBERED = re.compile(r"^(?P<id>.+?)(?:_\d+)?$")  # B0001-0007-03 or B0001-0007-03_2


@dataclass(frozen=True)
class Photo:
    path: Path
    label_id: str | None  # None when `problem` says why it has none
    problem: str | None = None
    where: str = ""  # CSV row, for messages


def photos_from_folder(folder: Path) -> list[Photo]:
    """Photos named by the label they show (``LABEL_ID.jpg`` or ``LABEL_ID_N.jpg``)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise PufError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    photos = []
    for path in paths:
        numbered = _NUMBERED.match(path.stem)
        label_id = numbered["id"] if numbered else path.stem
        try:
            parse_label_id(label_id)
        except PufError:
            photos.append(Photo(path, None, f"the name {path.stem!r} is not a label id (BATCH-FFFF-SS, "
                                            "optionally _N): rename it or list it in a CSV"))
            continue
        photos.append(Photo(path, label_id))
    return photos


def photos_from_csv(table: Path) -> list[Photo]:
    """Photos listed in a CSV with columns ``photo,label_id`` (paths relative to the CSV)."""
    try:
        with Path(table).open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"photo", "label_id"} - set(reader.fieldnames or ())
            if missing:
                raise PufError(f"{table} lacks columns {sorted(missing)} (photo,label_id)")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PufError(f"cannot read {table}: {error}") from None
    photos = []
    for number, row in enumerate(rows, start=2):
        name, label_id = (row.get("photo") or "").strip(), (row.get("label_id") or "").strip()
        where = f"{Path(table).name} line {number}"
        path = Path(table).parent / name
        if not name or not label_id:
            photos.append(Photo(path, None, "needs both a photo and a label_id", where))
            continue
        try:
            parse_label_id(label_id)
        except PufError as error:
            photos.append(Photo(path, None, str(error), where))
            continue
        photos.append(Photo(path, label_id, None, where))
    if not photos:
        raise PufError(f"{table} lists no photos")
    return photos


def build_queries(source: Path, out: Path, templates_path: Path, *, registry_path: Path | None = None,
                  label_px: float | None = None, progress: bool = True) -> dict:
    """Cut the label of every photo in `source` (a folder, or a CSV) into the query set `out`.
    `templates_path` is a bundle folder (its glyph templates) or a templates .npz file."""
    source, out = Path(source), Path(out)
    if source.is_dir():
        photos = photos_from_folder(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        photos = photos_from_csv(source)
    else:
        raise PufError(f"{source} is neither a folder of photos nor a CSV (photo,label_id)")
    templates_file = Path(templates_path) / TEMPLATES if Path(templates_path).is_dir() else Path(templates_path)
    if not templates_file.is_file():
        raise PufError(f"no glyph templates at {templates_file}: give a bundle exported with them "
                       "(puf export) or the templates .npz")
    templates = PatternTemplates.load(templates_file)
    limits = CaptureLimits() if label_px is None else CaptureLimits(label_px=label_px)
    patterns = _RegistryPatterns(registry_path)
    ledger = Ledger(out)
    report: dict[str, Any] = {"source": str(source), "out": str(out), "photos": len(photos), "written": 0,
                              "already_done": 0, "skipped": []}
    try:
        for photo in tqdm(photos, desc="cutting queries", unit="photo", disable=not progress):
            try:
                if photo.label_id is None:  # `problem` says why
                    raise PufError(str(photo.problem))
                digest = _sha256(photo.path)
                if digest in ledger.done:
                    report["already_done"] += 1
                    continue
                try:
                    crop, glyph = _cut(photo.path, limits, templates)
                    pattern = patterns.pattern(photo.label_id, glyph)
                    if ledger.pattern.get(photo.label_id, pattern) != pattern:
                        raise PufError(f"the glyph reads {pattern}, earlier photos of {photo.label_id} read "
                                       f"{ledger.pattern[photo.label_id]}: a photo of another label?")
                except PufError as error:
                    ledger.record(photo, digest, "skipped", str(error))
                    raise
                ledger.add(photo, photo.label_id, digest, pattern, crop)
                report["written"] += 1
            except PufError as error:
                report["skipped"].append({"photo": str(photo.path), "where": photo.where, "reason": str(error)})
    finally:
        patterns.close()
        ledger.write_labels()
    report["labels"] = len(ledger.pattern)
    report["queries"] = len(ledger.done)
    return report


def _cut(path: Path, limits, templates) -> tuple:
    """The canonical crop of the label nearest the photo's centre, and its glyph reading."""
    image = as_uint8(load_image(path))
    result = find_labels(image, limits, templates)
    if not result.labels:
        cut = sum(r.reason == "edge" for r in result.rejections)
        raise PufError("; ".join(["no label found", *result.notes]) + (f" ({cut} cut by the photo's edge)"
                                                                       if cut else ""))
    centre = np.array([image.shape[1], image.shape[0]], np.float64) / 2
    label = min(result.labels, key=lambda found: float(np.hypot(*(np.asarray(found.centre) - centre))))
    if label.orientation != "glyph" or label.glyph is None:
        margin = f" (margin {label.glyph.orientation_margin:.3f})" if label.glyph is not None else ""
        raise PufError(f"orientation {label.orientation}: the glyph does not settle which side is up{margin}")
    return label.crop, label.glyph.pattern


class _RegistryPatterns:
    """A label's pattern: the factory registry's when it knows the label, else the glyph's."""

    def __init__(self, path: Path | None) -> None:
        if path is not None and not Path(path).is_file():
            raise PufError(f"no registry at {path}")
        self.registry = Registry(Path(path)) if path is not None else None

    def pattern(self, label_id: str, glyph: str) -> str:
        if self.registry is None:
            return glyph
        record = self.registry.label(label_id)
        if record is None:
            batch = parse_label_id(label_id)[0]
            if self.registry.batch_layout(batch) is not None:
                raise PufError(f"unknown label id {label_id}: the registry's batch {batch} has no such label")
            return glyph  # a label the factory never registered (a counterfeit made on purpose)
        if record.pattern and record.pattern != glyph:
            raise PufError(f"the glyph reads {glyph} but the registry has {record.pattern} for {label_id}: "
                           "a photo of another label?")
        return record.pattern or glyph

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()


class Ledger:
    """Every photo tried (OUT/photos.csv, appended as it goes) and the labels.csv made from it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / LEDGER
        self.done: set[str] = set()  # sha256 of photos cut
        self.pattern: dict[str, str] = {}  # label id -> pattern
        self.captures: dict[str, int] = {}  # label id -> captures written
        try:
            out.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                with self.path.open(newline="") as f:
                    for row in csv.DictReader(f):
                        if row.get("status") == "written":
                            self._note(row["sha256"], row["label_id"], row["pattern"])
            else:
                self.path.write_text(",".join(_LEDGER_COLUMNS) + "\n")
        except (OSError, KeyError, csv.Error) as error:
            raise PufError(f"cannot use the ledger {self.path} ({error}): give an empty --out folder") from None

    def _note(self, digest: str, label_id: str, pattern: str) -> None:
        self.done.add(digest)
        self.pattern.setdefault(label_id, pattern)
        self.captures[label_id] = self.captures.get(label_id, 0) + 1

    def add(self, photo: Photo, label_id: str, digest: str, pattern: str, crop) -> None:
        capture = f"h{self.captures.get(label_id, 0)}"
        folder = self.out / "crops" / label_id
        folder.mkdir(parents=True, exist_ok=True)
        write_crop(folder / f"{capture}.png", crop)
        self.record(photo, digest, "written", "", pattern, capture)
        self._note(digest, label_id, pattern)

    def record(self, photo: Photo, digest: str, status: str, reason: str, pattern: str = "",
               capture: str = "") -> None:
        try:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([str(photo.path), digest, photo.label_id or "", pattern, capture, status,
                                        reason])
        except OSError as error:
            raise PufError(f"cannot write {self.path} ({error.strerror or error}); free space and run "
                           "the same command again to resume") from None

    def write_labels(self) -> None:
        """labels.csv, written whole (atomically) from the ledger."""
        rows = [f"{label_id},{parse_label_id(label_id)[0]},{pattern}" for label_id, pattern in
                sorted(self.pattern.items())]
        try:
            with replacing(self.out / "labels.csv") as tmp:
                tmp.write_text("label_id,batch,pattern\n" + "".join(row + "\n" for row in rows))
        except OSError as error:
            raise PufError(f"cannot write {self.out / 'labels.csv'} ({error.strerror or error})") from None


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise PufError(f"cannot read {path}: {error.strerror or error}") from None


def describe(report: dict) -> str:
    lines = [f"{report['source']}: {report['photos']} photos; {report['written']} cut now, "
             f"{report['already_done']} done before; {report['queries']} queries of {report['labels']} labels "
             f"in {report['out']}"]
    if report["skipped"]:
        lines.append(f"skipped {len(report['skipped'])}:")
        lines += [f"  {s['where'] or s['photo']}: {s['reason']}" for s in report["skipped"]]
    lines.append(f"next: puf evaluate --bundle BUNDLE --queries {report['out']} --far 1e-4")
    return "\n".join(lines)
