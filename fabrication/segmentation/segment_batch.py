"""`puf segment`'s work: cut every photographed field of a batch into label crops, and
record batches, fields and labels in the factory's registry.

What it reads and writes is the batch folder's (fabrication.batch_dir): the layout (or one for
a plain folder of images, fabrication.segmentation.field_images), the fields, the optional glyph templates
and stage calibration, the crops and overlays. Every field is recorded in one transaction
after its crops are written, so an interrupted run resumes with the fields not yet
recorded; a field already done is skipped unless its image changed or `force` is set (an
ambiguous one is tried again). A field that cannot be read or segmented is recorded and
listed, and the run goes on.

The camera's rotation (0/90/180/270 degrees, plus the calibrated tilt) is the one given
when there is one; otherwise, with pattern templates, it is found from the glyphs: when
most glyphs of a field read a quarter turn off, the field is segmented again turned by it,
and the batch's next fields start from the rotation found.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from edge_app.errors import PufError
from edge_app.folder_lock import exclusive
from edge_app.label_size import estimate_label_px
from edge_app.layout import UNKNOWN_PATTERN, BatchLayout
from edge_app.orientation import PatternTemplates
from edge_app.pattern_set import PatternSet
from edge_app.segment import load_image
from fabrication.batch_dir import BatchDir, FieldImage
from fabrication.registry import FieldRecord, LabelRecord, Registry
from fabrication.segmentation.field_images import find_fields, folder_layout
from fabrication.segmentation.image_files import write_crop, write_overlay
from fabrication.segmentation.reasons import reason_text
from fabrication.segmentation.segment_field import CutOptions, FieldOutcome, FieldShot, segment_field

if TYPE_CHECKING:
    from edge_app.orientation import PatternTemplates

# labels whose glyphs are read before a batch's patterns are trusted to its pattern set: two fields of 12
JUDGED_LABELS = 24


@dataclass(frozen=True)
class FolderOptions:
    """What a plain folder of images (no layout.json, no manifest) cannot say itself."""

    order: Path | None = None  # a CSV (file,field) saying which image is which field
    layout: Path | None = None  # a layout file (default: the batch's, else built from the sizes)
    pattern_set: Path | None = None  # the glyphs etched in the labels
    glyph_um: float | None = None
    pixel_um: float | None = None  # camera pixel size; wins over the manifest's
    batch_id: str | None = None
    # the label geometry, as a layout's (defaults: BatchLayout's)
    labels: tuple[int, int] = (BatchLayout.label_cols, BatchLayout.label_rows)  # labels per field, COLSxROWS
    label_um: float = BatchLayout.label_size_um
    border_um: float = BatchLayout.border_width_um
    pitch_um: float = BatchLayout.pitch_um


@dataclass(frozen=True)
class SegmentOptions:
    """A `puf segment` run over one batch folder."""

    batch_dir: Path
    registry: Path
    cut: CutOptions = field(default_factory=CutOptions)
    templates: Path | None = None  # glyph templates (default: the batch's own, if any)
    rotation_deg: float | None = None  # the labels' angle in the images (default: calibration, glyphs)
    force: bool = False  # segment fields already recorded
    folder: FolderOptions = field(default_factory=FolderOptions)


def batch_templates(batch: BatchDir, layout, given: Path | None):
    """The glyph templates to read patterns and camera turns with: those given, else the
    batch's own file, else rendered from the layout's pattern set; None without any."""
    path = given or batch.templates_path
    if given is not None or path.exists():
        return PatternTemplates.load(path)
    if layout.pattern_set is None:
        return None
    # a glyph's line is one laser pass: about 0.7 of the border (7 um of 10 at the reference power)
    return layout.pattern_set.templates(glyph_frac=layout.glyph_size_um / layout.label_size_um,
                                        line_frac=0.7 * layout.border_width_um / layout.label_size_um)


def expected_rotation(given: float | None, calibration) -> tuple[float, str]:
    """The labels' expected angle in the images, and where it comes from."""
    if given is not None:
        return given, "--rotation-deg"
    if calibration is not None:
        return calibration.rotation_deg, "the stage calibration"
    return 0.0, "the default"


def signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def segment_batch(options: SegmentOptions) -> dict:  # noqa: C901 -- skip, cut and record in one pass; to split
    """Segment the batch's fields not yet recorded; the run's summary (as `--json` prints it)."""
    started = time.perf_counter()
    batch_dir, folder = options.batch_dir, options.folder
    batch = BatchDir(batch_dir)
    if not batch_dir.is_dir():
        raise PufError(f"{batch_dir} is not a folder")
    found = find_fields(batch_dir, folder.pixel_um, folder.order)
    fields = found.fields
    _check_pixel_sizes(fields)
    layout = folder_layout(batch_dir, fields, layout_file=folder.layout, batch_id=folder.batch_id,
                           labels=folder.labels, label_um=folder.label_um, border_um=folder.border_um,
                           pitch_um=folder.pitch_um, glyph_um=folder.glyph_um,
                           pattern_set=PatternSet.load(folder.pattern_set) if folder.pattern_set else None)
    templates = batch_templates(batch, layout, options.templates)
    calibration = batch.stage_calibration()
    rotation, rotation_source = expected_rotation(options.rotation_deg, calibration)
    how = replace(options.cut, templates=templates,
                  find_rotation=templates is not None and options.rotation_deg is None)
    cutting = _Cutting(rotation, rotation_source)
    registry_path = options.registry
    skipped = 0
    todo: list[tuple[FieldImage, str | None]] = []
    gone: list[dict] = []  # fields recorded before whose image has since been removed
    with exclusive(batch.segment_lock_path, f"the batch {batch_dir}"), Registry(registry_path) as registry:
        for item in fields:
            sig = signature(item.path) if item.path.exists() else None
            known = registry.field(layout.batch_id, item.field)
            if sig is None and known is not None:  # removed since it was cut: keep its crops and records
                gone.append({"field": item.field, "status": "image missing", "file": item.path.name,
                             "detail": f"{item.path} no longer exists: its crops and records are kept"})
                continue
            # an ambiguous field is tried again: a new --rotation-deg or templates may settle it
            if (not options.force and known is not None and known.signature == sig
                    and known.status == "done"
                    and (not how.overlay or batch.overlay_path(item.field).exists())):
                skipped += 1
                continue
            todo.append((item, sig))

        def outcomes() -> Iterator[tuple[FieldImage, FieldOutcome]]:
            for item, sig in todo:
                expected = _expected_shift_um(item, layout, calibration)
                outcome = _field_outcome(item, layout, how, cutting.rotation, expected, sig, load_image)
                cutting.note(item.field, outcome)
                yield item, outcome

        pending = outcomes()
        # a plain folder's patterns are read from the glyphs: first see that they are this set's
        judged = _first_judged(pending, layout, templates) \
            if templates is not None and UNKNOWN_PATTERN in layout.patterns else []
        registry.upsert_batch(layout, str(batch_dir.resolve()))
        batch.crops_dir.mkdir(exist_ok=True)
        if how.overlay:
            batch.overlays_dir.mkdir(exist_ok=True)
        bar = tqdm(total=len(todo), unit="field", desc=f"segment {layout.batch_id}", disable=None)
        for item, outcome in itertools.chain(judged, pending):
            bar.update(1)
            locked = registry.locked_labels(layout.batch_id, item.field)
            for label_id, crop in outcome.crops.items():
                if label_id not in locked:
                    digest = write_crop(batch.crop_path(label_id), crop)
                    outcome.labels = [_with_sha(r, digest) if r.label_id == label_id else r
                                      for r in outcome.labels]
            registry.record_field(outcome.record, outcome.labels, outcome.rejections)
            for label in outcome.labels:  # crops of labels no longer found
                if label.status != "found" and label.label_id not in locked:
                    batch.crop_path(label.label_id).unlink(missing_ok=True)
            if how.overlay and outcome.overlay is not None:
                write_overlay(batch.overlay_path(item.field), outcome.overlay)
        bar.close()
        summary = _summary(registry, layout, fields, len(todo), skipped, time.perf_counter() - started)
        summary["registry"] = str(registry_path)
        summary["field_order"] = found.order
        summary["images_not_in_order_file"] = found.unlisted
        summary["rotation"] = {"deg": cutting.rotation, "from": cutting.source,
                               "fields_segmented_at": {f"{deg:g}": n for deg, n in cutting.rotations.items()}}
        summary["pixel_size_um"] = _pixel_size_summary(fields, cutting.pixel_sizes)
        summary["warnings"] = _pattern_warnings(registry, layout, templates)
        for record in registry.fields(layout.batch_id):
            if record.status in ("failed", "unreadable", "ambiguous") and \
                    record.field in {f.field for f in fields}:
                summary["problems"].append({"field": record.field, "status": record.status,
                                            "file": record.file, "detail": record.detail})
        summary["problems"] += gone
    return summary


@dataclass
class _Cutting:
    """The labels' rotation in the images as the batch's fields find it (a turned camera is
    found from the glyphs of one field, and the next fields start from it), and the
    rotation and pixel size each field was cut at."""

    rotation: float
    source: str
    rotations: Counter[float] = field(default_factory=Counter)
    pixel_sizes: list[float] = field(default_factory=list)

    def note(self, number: int, outcome: FieldOutcome) -> None:
        if outcome.rotation_deg is None or outcome.pixel_size_um is None:  # it was not segmented
            return
        if outcome.rotation_deg != self.rotation:  # the glyphs found the camera turned
            self.rotation, self.source = outcome.rotation_deg, f"the glyphs of field {number}"
        self.rotations[outcome.rotation_deg] += 1
        self.pixel_sizes.append(outcome.pixel_size_um)


def _expected_shift_um(item: FieldImage, layout: BatchLayout, calibration) -> tuple[float, float]:
    """Where the stage says the field went, off its planned centre (0, 0 when unknown)."""
    if calibration is None or item.stage_um is None or not 0 <= item.field < layout.fields_per_batch:
        return 0.0, 0.0
    centre = layout.field_center_um(item.field)
    reported = calibration.stage_to_design(*item.stage_um)
    return reported[0] - centre[0], reported[1] - centre[1]


def _first_judged(outcomes: Iterator[tuple[FieldImage, FieldOutcome]], layout: BatchLayout,
                  templates: PatternTemplates) -> list[tuple[FieldImage, FieldOutcome]]:
    """The first fields' outcomes, enough of them to judge whether the labels show the
    pattern set's glyphs at all (`JUDGED_LABELS`). When most glyphs match none of the set's,
    the patterns would be guesses: the batch is refused before anything is recorded."""
    judged = []
    scores: list[float] = []
    unmatched = 0
    for item, outcome in outcomes:
        judged.append((item, outcome))
        read = [label for label in outcome.labels if label.status == "found" and label.glyph_score is not None]
        scores += [float(label.glyph_score or 0.0) for label in read]
        unmatched += sum(label.reason == "glyph unmatched" for label in read)
        if len(scores) >= JUDGED_LABELS:
            break
    if scores and unmatched > len(scores) / 2:
        name = layout.pattern_set.name if layout.pattern_set is not None else "given"
        raise PufError(
            f"these fields do not show this pattern set's glyphs: {unmatched} of the first {len(scores)} "
            f"labels' glyphs match none of pattern set {name!r} (scores {min(scores):.2f}-{max(scores):.2f}; "
            f"its own glyphs score {templates.score_floor:.2f} or more). Nothing was recorded: give the "
            "pattern set the labels were etched with (--pattern-set or --templates)")
    return judged


def _with_sha(record, digest: str):
    return replace(record, sha256=digest)


def _check_pixel_sizes(fields: list[FieldImage]) -> None:
    """Refuse pixel sizes that are not positive; fields without one need the label size
    found in their image (edge_app.label_size), or --pixel-um when that cannot be."""
    bad = [f.path.name for f in fields if f.pixel_size_um is not None and not f.pixel_size_um > 0]
    unknown = [f.path.name for f in fields if f.pixel_size_um is None]
    if bad or (unknown and find_spec("edge_app.label_size") is None):
        names = bad or unknown
        raise PufError(f"{'a pixel size that is not positive' if bad else 'no pixel size'} for "
                       f"{', '.join(names[:3])}{' and more' if len(names) > 3 else ''}: give --pixel-um")


def _field_outcome(item: FieldImage, layout, how: CutOptions, rotation: float,
                   expected_shift_um: tuple[float, float], sig: str | None, load_image) -> FieldOutcome:
    """Segment one field; a field that cannot be read or segmented becomes a record that
    says why, never an exception that stops the batch."""
    def failed(status: str, detail: str) -> FieldOutcome:
        labels = []
        if 0 <= item.field < layout.fields_per_batch:
            for slot in range(layout.labels_per_field):
                row, col = divmod(slot, layout.label_cols)
                labels.append(LabelRecord(layout.label_id(item.field, slot), layout.batch_id,
                                          item.field, slot, row, col, "missing",
                                          layout.pattern_of(item.field, slot), status))
        return FieldOutcome(FieldRecord(layout.batch_id, item.field, status, item.path.name, sig,
                                        detail, how.method), labels, [], {})

    if not 0 <= item.field < layout.fields_per_batch:
        return failed("failed", f"field {item.field} is not in the batch layout "
                                f"(0..{layout.fields_per_batch - 1})")
    try:
        image = load_image(item.path)
    except PufError as error:
        return failed("unreadable", str(error))
    try:
        pixel_size_um = item.pixel_size_um
        if pixel_size_um is None:  # a plain folder: the labels' size in the image tells it

            side_px = estimate_label_px(image, border_frac=layout.border_width_um / layout.label_size_um)
            if not side_px:
                return failed("failed", "no label size found in the image: give --pixel-um")
            pixel_size_um = layout.label_size_um / side_px
        shot = FieldShot(item.field, float(pixel_size_um), rotation, expected_shift_um, item.path.name, sig)
        return segment_field(image, layout, shot, how)
    except PufError as error:
        return failed("failed", str(error))
    except Exception as error:  # noqa: BLE001 - a bad field must not stop the batch
        return failed("failed", f"{type(error).__name__}: {error}")


def _summary(registry, layout, fields: list[FieldImage], ran: int, skipped: int,
             seconds: float) -> dict:
    counts = registry.counts(layout.batch_id)
    reasons: Counter[str] = Counter()
    for label in registry.labels(layout.batch_id):
        if label.status in ("rejected", "missing"):
            reasons[reason_text(label.reason)] += 1
    candidates = Counter(reason_text(r.reason)
                         for _, r in registry.rejections(layout.batch_id))
    timings = [r.elapsed_ms for r in registry.fields(layout.batch_id) if r.elapsed_ms]
    return {
        "batch_id": layout.batch_id,
        "fields": {"listed": len(fields), "segmented_now": ran, "skipped": skipped,
                   **counts["fields"]},
        "labels": {"expected": len(fields) * layout.labels_per_field, **counts["labels"]},
        "labels_not_found_why": dict(reasons.most_common()),
        "candidates_rejected_why": dict(candidates.most_common()),
        "segment_ms_per_field": round(sorted(timings)[len(timings) // 2], 2) if timings else None,
        "seconds": round(seconds, 2),
        "problems": [],
    }


def _pixel_size_summary(fields: list[FieldImage], used: list[float]) -> dict:
    """The pixel size the fields segmented now were cut at, and where it came from: --pixel-um,
    the manifest, the images' OME metadata, or the labels' size in the images."""
    values = sorted(used)
    median = round(values[len(values) // 2], 4) if values else None
    sources = dict.fromkeys(f.pixel_size_from or "the labels' size in the images" for f in fields)
    return {"median": median, "from": " and ".join(sources)}


def _pattern_warnings(registry, layout, templates) -> list[str]:
    """Say so when labels found have no pattern class: training cannot use them."""
    if UNKNOWN_PATTERN not in layout.patterns:
        return []
    if templates is None:
        return ["the labels have no pattern class (the layout does not know them and no pattern "
                "templates were given): give --templates FILE.npz (the pattern set's templates, "
                "as `puf design` writes them) to read them from the glyphs, or --layout with the "
                "batch's patterns, before `puf train`"]
    unread = Counter(label.reason for label in registry.labels(layout.batch_id, status="found")
                     if label.pattern == UNKNOWN_PATTERN)
    floor = f" (below {templates.score_floor:.2f}, the least the set's own glyphs score)"
    return [f"{n} labels found have no pattern class: "
            + (f"{reason_text(why)}{floor if why == 'glyph unmatched' else ''}" if why else
               "their glyph did not read the right way up with the templates given")
            for why, n in sorted(unread.items(), key=lambda item: str(item[0]))]
