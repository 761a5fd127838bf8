"""`puf segment`: cut every photographed field of a batch into label crops, and record
batches, fields and labels in the factory's registry.

BATCH_DIR/layout.json                    the batch layout (or --layout, or the sizes as options)
BATCH_DIR/fields/manifest.json           the fields to segment (or --order, or the images in
                                         fields/ or BATCH_DIR in sorted name order; see
                                         edge_app.field_images)
BATCH_DIR/pattern_templates.npz          optional: glyph templates (edge_app.orientation);
                                         they settle the position of a slipped field, find
                                         a turned camera and name the patterns of a plain
                                         folder's labels
BATCH_DIR/stage/calibration.json         optional: the labels' rotation in the images and,
                                         with the manifest's stage positions, where each
                                         field really was
BATCH_DIR/crops/<label id>.png           one crop per label found, canonical orientation
BATCH_DIR/overlays/field_0007.jpg        with --overlay: what was found, for a person
REGISTRY                                 --registry, else $PUF_REGISTRY, else
                                         BATCH_DIR/../registry.sqlite (one per factory)

Every field is recorded in one transaction after its crops are written, so an interrupted
run resumes with the fields not yet recorded; a field already done is skipped unless
its image changed or --force is given (an ambiguous one is tried again). A field that cannot be read or segmented is
recorded and listed, and the run goes on.

The camera's rotation (0/90/180/270 degrees, plus the calibrated tilt) is --rotation-deg
when given; otherwise, with pattern templates, it is found from the glyphs: when most
glyphs of a field read a quarter turn off, the field is segmented again turned by it, and
the batch's next fields start from the rotation found.

Only the standard library is imported here at module level (`puf --help` stays instant).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import PufError, cannot_write
from edge_app.field_images import FieldImage, find_fields, folder_layout
from edge_app.folder_lock import exclusive
from edge_app.layout import UNKNOWN_PATTERN

TEMPLATES_FILE = "pattern_templates.npz"
LOCK_FILE = ".puf-segment.lock"  # one `puf segment` at a time on a batch (`edge_app.folder_lock`)
# why a label has no crop, besides segmentation's own reasons (edge_app.segment.REASONS)
FIELD_REASONS = {
    "neighbour": "a neighbouring field's label",
    "off-lattice": "off the label lattice",
    "ambiguous": "field position ambiguous",
    "not found": "not found",
    "unreadable": "field image unreadable",
    "failed": "field failed",
}


MIN_TURN_VOTES = 2  # clearly read glyphs a field needs to say the camera is turned
TURN_MAJORITY = 2 / 3  # of them, how many must agree on the turn


def batch_templates(batch_dir: Path, layout, given: Path | None):
    """The glyph templates to read patterns and camera turns with: those given, else the
    batch's own file, else rendered from the layout's pattern set; None without any."""
    from edge_app.orientation import PatternTemplates

    path = given or batch_dir / TEMPLATES_FILE
    if given is not None or path.exists():
        return PatternTemplates.load(path)
    if layout.pattern_set is None:
        return None
    # a glyph's line is one laser pass: about 0.7 of the border (7 um of 10 at the reference power)
    return layout.pattern_set.templates(glyph_frac=layout.glyph_size_um / layout.label_size_um,
                                        line_frac=0.7 * layout.border_width_um / layout.label_size_um)


def turned_camera_hint(templates) -> str:
    """What to do about a field whose labels fit no lattice offset: often a turned camera."""
    hint = "if the camera is turned, give --rotation-deg (90, 180 or 270)"
    return hint if templates is not None else \
        f"{hint}, or pattern templates (--templates) to find the turn from the glyphs"


def reason_text(code: str | None) -> str:
    from edge_app.segment import REASONS

    return REASONS.get(code or "", FIELD_REASONS.get(code or "", code or "unknown"))


def _grid(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS such as 4x3, got {text!r}")
    return int(match[1]), int(match[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("batch_dir", type=Path, help="a photographed batch, or a folder of images")
    parser.add_argument("--registry", type=Path,
                        help="the factory's registry (default: $PUF_REGISTRY, else "
                             "registry.sqlite beside BATCH_DIR)")
    parser.add_argument("--method", choices=("fast", "paper"), default="fast",
                        help="segmentation method (default fast; 'paper' is the source paper's)")
    parser.add_argument("--overlay", action="store_true",
                        help="also draw each field with its labels, ids and rejections "
                             "(BATCH_DIR/overlays/)")
    parser.add_argument("--force", action="store_true", help="segment fields already recorded")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--crop-size", type=int, default=128, help="crop side in px (default 128)")
    parser.add_argument("--templates", type=Path,
                        help=f"pattern templates (.npz) to read glyphs with: they settle the "
                             f"position of a slipped field, find a turned camera and name the "
                             f"patterns of a plain folder's labels (default: BATCH_DIR/{TEMPLATES_FILE} "
                             "if it exists)")
    parser.add_argument("--rotation-deg", type=float,
                        help="the labels' angle in the images, degrees clockwise, e.g. 90 for a "
                             "camera turned a quarter (default: the stage calibration's rotation, "
                             "BATCH_DIR/stage/calibration.json, else 0, turned by quarters as the "
                             "glyphs say when there are pattern templates)")
    parser.add_argument("--max-shift-um", type=float, default=220.0,
                        help="how far a field may lie from where it was planned (default 220)")
    real = parser.add_argument_group("a folder of images without layout.json or manifest")
    real.add_argument("--order", type=Path, metavar="FILE.csv",
                      help="which image is which field: a CSV with the columns file,field; images "
                           "it does not name are skipped (default: the manifest, else the images "
                           "in sorted name order, fields 0, 1, ...)")
    real.add_argument("--layout", type=Path, metavar="LAYOUT.json",
                      help="the batch layout as `puf design` writes it (default: BATCH_DIR/layout.json, "
                           "else one built from the options below, patterns unknown)")
    real.add_argument("--pattern-set", type=Path, metavar="PATTERNS.json",
                      help="the glyphs etched in the labels (`puf patterns` writes this file from SVG, DXF or a "
                           "font): each label's pattern is read from its glyph, and the turn of the camera too")
    real.add_argument("--glyph-um", type=float, help="glyph size in um (default 0.4 of the label side)")
    real.add_argument("--pixel-um", type=float,
                      help="camera pixel size in um (default: the manifest's, else found from "
                           "the labels' size in each image)")
    real.add_argument("--batch-id", help="batch id (default: the folder's name)")
    real.add_argument("--labels", type=_grid, default=(4, 3), metavar="COLSxROWS",
                      help="labels per field (default 4x3)")
    real.add_argument("--label-um", type=float, default=200.0, help="label side (default 200)")
    real.add_argument("--border-um", type=float, default=10.0, help="border width (default 10)")
    real.add_argument("--pitch-um", type=float, default=250.0, help="label pitch (default 250)")


# ---- the batch on disk ---------------------------------------------------------------

def expected_rotation(batch_dir: Path, args: argparse.Namespace) -> tuple[float, str]:
    """The labels' expected angle in the images, and where it comes from."""
    if args.rotation_deg is not None:
        return args.rotation_deg, "--rotation-deg"
    calibration = batch_dir / "stage" / "calibration.json"
    try:
        return float(json.loads(calibration.read_text()).get("rotation_deg", 0.0)), "the stage calibration"
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0, "the default"


def stage_to_design(batch_dir: Path):
    """The stage calibration (BATCH_DIR/stage/calibration.json) as a function from stage
    to design µm, or None when there is none (or only reference points to fit one)."""
    import math

    import numpy as np

    try:
        data = json.loads((batch_dir / "stage" / "calibration.json").read_text())
        origin = np.array([float(v) for v in data["origin_um"]])
        angle = math.radians(float(data.get("rotation_deg", 0.0)))
        mirror = -1.0 if data.get("mirror_y") else 1.0
        matrix = float(data.get("scale", 1.0)) * np.array(
            [[math.cos(angle), -math.sin(angle) * mirror], [math.sin(angle), math.cos(angle) * mirror]])
        inverse = np.linalg.inv(matrix)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, np.linalg.LinAlgError):
        return None
    return lambda x, y: tuple(float(v) for v in inverse @ (np.array([x, y]) - origin))


def signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def write_crop(path: Path, crop) -> str:
    """Write a crop as PNG (atomically, only if its bytes changed); return their sha256."""
    import cv2

    ok, data = cv2.imencode(".png", crop)
    if not ok:
        raise PufError(f"cannot encode the crop {path.name}")
    payload = data.tobytes()
    digest = hashlib.sha256(payload).hexdigest()
    try:
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return digest
    except OSError as error:
        raise cannot_write(path, error, "the fields recorded so far are kept") from None
    _write_atomically(path, payload)
    return digest


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write a file under a temporary name and rename it into place: a file that exists is
    whole. A failed write leaves nothing behind and says what to do."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(payload)
        tmp.replace(path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, error, "the fields recorded so far are kept") from None


# ---- one field -----------------------------------------------------------------------

@dataclass
class FieldOutcome:
    record: object  # FieldRecord
    labels: list  # LabelRecord
    rejections: list  # RejectionRecord
    crops: dict  # label id -> crop to write
    overlay: object | None = None  # BGR image
    rotation_deg: float | None = None  # the rotation the field was segmented with
    pixel_size_um: float | None = None  # the pixel size it was segmented with


def segment_field(image, layout, field: int, pixel_size_um: float, *, method: str = "fast",
                  crop_size: int = 128, rotation_deg: float = 0.0, templates=None,
                  max_shift_um: float = 220.0, expected_shift_um: tuple[float, float] = (0.0, 0.0),
                  overlay: bool = False, file: str | None = None, sig: str | None = None,
                  find_rotation: bool = False) -> FieldOutcome:
    """Segment one field image and say what became of every label of the field.

    With `find_rotation` and templates, a field whose glyphs mostly read a quarter turn
    off is segmented again with the rotation turned by it (a camera mounted turned)."""
    import numpy as np

    from edge_app.registry import FieldRecord, LabelRecord, RejectionRecord
    from edge_app.segment import segment
    from edge_app.slots import assign_slots, slot_corners_um

    label_px = layout.label_size_um / pixel_size_um

    def cut(rotation: float):
        return segment(image, label_px, method=method, k=layout.labels_per_field,
                       crop_size=crop_size, border_frac=layout.border_width_um / layout.label_size_um,
                       rotation_deg=rotation, templates=templates)

    result = cut(rotation_deg)
    turns = glyph_quarter_turns(result.labels) if find_rotation and templates is not None else None
    if turns:
        rotation_deg = (rotation_deg - 90.0 * turns + 180.0) % 360.0 - 180.0
        result = cut(rotation_deg)
    use_glyphs = templates is not None and set(layout.patterns) <= set(templates.names)
    patterns = [label.glyph.pattern if label.glyph and label.glyph.quarter_turns == 0 else None
                for label in result.labels] if use_glyphs else None
    assignment = assign_slots([label.centre for label in result.labels],
                              [label.angle_deg for label in result.labels], layout, field,
                              pixel_size_um, result.image_size, patterns, max_shift_um,
                              expected_shift_um)
    width, height = result.image_size
    records: dict[int, LabelRecord] = {}
    crops = {}
    rejections = []

    def corners_json(corners) -> str:
        return json.dumps(np.round(np.asarray(corners, float), 2).tolist())

    def base(slot: int) -> dict:
        row, col = divmod(slot, layout.label_cols)
        return dict(label_id=layout.label_id(field, slot), batch_id=layout.batch_id, field=field,
                    slot=slot, row=row, col=col, pattern=layout.pattern_of(field, slot))

    for label, place, why in zip(result.labels, assignment.slots, assignment.reasons, strict=True):
        if place is None or why is not None or assignment.status != "ok":
            reason = why or "ambiguous"
            rejections.append(RejectionRecord(reason, reason_text(reason),
                                              place.label_id if place else None,
                                              corners_json(label.corners)))
            continue
        quality = label.quality
        fields = base(place.slot)
        if fields["pattern"] == UNKNOWN_PATTERN and label.glyph and label.glyph.quarter_turns == 0:
            fields["pattern"] = label.glyph.pattern  # a plain folder's labels: as the glyph reads
        records[place.slot] = LabelRecord(
            **fields, status="found",
            crop_path=f"crops/{place.label_id}.png", corners=corners_json(label.corners),
            orientation=label.orientation,
            glyph_pattern=label.glyph.pattern if label.glyph else None,
            glyph_score=round(label.glyph.score, 4) if label.glyph else None,
            **quality.to_dict())
        crops[place.label_id] = label.crop
    # where every slot of the field should be, to tell cut and missing labels apart
    expected = {}
    if assignment.status == "ok":
        for slot in range(layout.labels_per_field):
            expected[slot] = assignment.to_image(slot_corners_um(layout, field, slot))
    for rejection in result.rejections:
        label_id = None
        if rejection.corners is not None and expected:
            centre = np.asarray(rejection.corners).mean(axis=0)
            slot = min(expected, key=lambda s: np.linalg.norm(expected[s].mean(axis=0) - centre))
            if np.linalg.norm(expected[slot].mean(axis=0) - centre) < 0.3 * label_px \
                    and slot not in records:
                label_id = layout.label_id(field, slot)
                records[slot] = LabelRecord(**base(slot), status="rejected",
                                            reason=rejection.reason,
                                            corners=corners_json(rejection.corners))
        rejections.append(RejectionRecord(rejection.reason, rejection.detail, label_id,
                                          None if rejection.corners is None
                                          else corners_json(rejection.corners)))
    for slot in range(layout.labels_per_field):
        if slot in records:
            continue
        if assignment.status != "ok":
            records[slot] = LabelRecord(**base(slot), status="rejected", reason="ambiguous")
            continue
        corners = expected[slot]
        whole = (corners[:, 0].min() >= 0 and corners[:, 1].min() >= 0
                 and corners[:, 0].max() <= width - 1 and corners[:, 1].max() <= height - 1)
        records[slot] = LabelRecord(**base(slot), status="missing" if whole else "rejected",
                                    reason="not found" if whole else "edge",
                                    corners=corners_json(corners))
    found = sum(r.status == "found" for r in records.values())
    if assignment.status == "ok":
        status, detail = ("done", assignment.detail) if found else ("failed", "no labels found")
    elif assignment.status == "empty":
        status, detail = "failed", "; ".join(["no labels found", *result.notes])
    else:
        status, detail = "ambiguous", f"{assignment.detail}; {turned_camera_hint(templates)}"
    if turns:
        detail += f" (camera turned: segmented at {rotation_deg:g} deg, as the glyphs read)"
    shift = assignment.shift_um or (None, None)
    record = FieldRecord(layout.batch_id, field, status, file, sig, detail, method, found,
                         len(rejections), shift[0], shift[1], round(result.elapsed_ms, 3))
    picture = None
    if overlay:
        picture = draw_overlay(image, result, records, expected, rejections, layout)
    return FieldOutcome(record, [records[s] for s in sorted(records)], rejections, crops, picture,
                        rotation_deg, pixel_size_um)


def glyph_quarter_turns(labels: list) -> int | None:
    """The quarter turn (counter-clockwise on screen) that a clear majority of the clearly
    read glyphs of a field show, or None when too few were read or they disagree."""
    from edge_app.segment import ORIENTATION_MARGIN

    turns = [label.glyph.quarter_turns for label in labels
             if label.glyph is not None and label.glyph.orientation_margin >= ORIENTATION_MARGIN]
    if len(turns) < MIN_TURN_VOTES:
        return None
    turn, votes = Counter(turns).most_common(1)[0]
    return turn if votes >= TURN_MAJORITY * len(turns) else None


def draw_overlay(image, result, records: dict, expected: dict, rejections: list, layout):
    """The field with found labels (green, id and top-left corner), rejected candidates
    (red, reason) and expected labels that were not found (yellow)."""
    import cv2
    import numpy as np

    from edge_app.segment import as_uint8

    picture = as_uint8(image)
    if picture.ndim == 2:
        picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    scale = min(1.0, 1280 / picture.shape[1])
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.5

    def poly(corners, colour, text, thickness=2, below=False):
        points = (np.asarray(corners, float) + 0.5) * scale - 0.5
        cv2.polylines(picture, [np.round(points).astype(np.int32)], True, colour, thickness,
                      cv2.LINE_AA)
        (x, top), (_, bottom) = points.min(axis=0), points.max(axis=0)
        y = min(bottom, picture.shape[0]) - 8 if below else max(top, 0) + 18
        cv2.putText(picture, text, (int(max(x, 0)) + 6, int(y)), font, size, colour, 1, cv2.LINE_AA)
        return points

    for slot, record in records.items():
        if record.status == "found":
            points = poly(json.loads(record.corners), (80, 255, 80), record.label_id)
            cv2.circle(picture, tuple(int(v) for v in np.round(points[0])), 5, (80, 255, 80), -1)
        elif slot in expected:
            poly(expected[slot], (40, 220, 255),
                 f"{record.label_id}: {reason_text(record.reason)}", 1, True)
    for rejection in rejections:
        if rejection.corners is not None:
            poly(json.loads(rejection.corners), (60, 60, 255),
                 reason_text(rejection.reason))
    status = f"{len(result.labels)} found, {len(rejections)} rejected, {result.elapsed_ms:.1f} ms"
    cv2.putText(picture, status, (8, picture.shape[0] - 10), font, 0.6, (255, 255, 255), 2,
                cv2.LINE_AA)
    return picture


# ---- the verb ------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edge_app.pattern_set import PatternSet
    from edge_app.registry import Registry
    from edge_app.segment import load_image

    started = time.perf_counter()
    batch_dir: Path = args.batch_dir
    if not batch_dir.is_dir():
        raise PufError(f"{batch_dir} is not a folder")
    found = find_fields(batch_dir, args.pixel_um, args.order)
    fields = found.fields
    _check_pixel_sizes(fields)
    layout = folder_layout(batch_dir, fields, layout_file=args.layout, batch_id=args.batch_id,
                           labels=args.labels, label_um=args.label_um, border_um=args.border_um,
                           pitch_um=args.pitch_um, glyph_um=args.glyph_um,
                           pattern_set=PatternSet.load(args.pattern_set) if args.pattern_set else None)
    templates = batch_templates(batch_dir, layout, args.templates)
    rotation, rotation_source = expected_rotation(batch_dir, args)
    find_rotation = templates is not None and args.rotation_deg is None
    rotations, pixel_sizes = Counter(), []
    to_design = stage_to_design(batch_dir)
    registry_path = args.registry or (Path(os.environ["PUF_REGISTRY"]) if os.environ.get(
        "PUF_REGISTRY") else batch_dir.resolve().parent / "registry.sqlite")
    crops_dir, overlay_dir = batch_dir / "crops", batch_dir / "overlays"
    crops_dir.mkdir(exist_ok=True)
    if args.overlay:
        overlay_dir.mkdir(exist_ok=True)
    ran = skipped = 0
    gone: list[dict] = []  # fields recorded before whose image has since been removed
    with exclusive(batch_dir / LOCK_FILE, f"the batch {batch_dir}"), Registry(registry_path) as registry:
        registry.upsert_batch(layout, str(batch_dir.resolve()))
        bar = tqdm(fields, unit="field", desc=f"segment {layout.batch_id}", disable=None)
        for item in bar:
            sig = signature(item.path) if item.path.exists() else None
            known = registry.field(layout.batch_id, item.field)
            if sig is None and known is not None:  # removed since it was cut: keep its crops and records
                gone.append({"field": item.field, "status": "image missing", "file": item.path.name,
                             "detail": f"{item.path} no longer exists: its crops and records are kept"})
                continue
            # an ambiguous field is tried again: a new --rotation-deg or templates may settle it
            if (not args.force and known is not None and known.signature == sig
                    and known.status == "done"
                    and (not args.overlay or (overlay_dir / _overlay_name(item.field)).exists())):
                skipped += 1
                continue
            ran += 1
            expected = (0.0, 0.0)
            if to_design is not None and item.stage_um is not None \
                    and 0 <= item.field < layout.fields_per_batch:
                centre = layout.field_center_um(item.field)
                reported = to_design(*item.stage_um)  # where the stage says it went
                expected = (reported[0] - centre[0], reported[1] - centre[1])
            outcome = _field_outcome(item, layout, args, rotation, templates, sig, load_image, expected,
                                     find_rotation)
            if outcome.rotation_deg is not None:
                if outcome.rotation_deg != rotation:  # the glyphs found the camera turned
                    rotation, rotation_source = outcome.rotation_deg, f"the glyphs of field {item.field}"
                rotations[outcome.rotation_deg] += 1
                pixel_sizes.append(outcome.pixel_size_um)
            locked = registry.locked_labels(layout.batch_id, item.field)
            for label_id, crop in outcome.crops.items():
                if label_id not in locked:
                    digest = write_crop(crops_dir / f"{label_id}.png", crop)
                    outcome.labels = [_with_sha(r, digest) if r.label_id == label_id else r
                                      for r in outcome.labels]
            registry.record_field(outcome.record, outcome.labels, outcome.rejections)
            for label in outcome.labels:  # crops of labels no longer found
                if label.status != "found" and label.label_id not in locked:
                    (crops_dir / f"{label.label_id}.png").unlink(missing_ok=True)
            if args.overlay and outcome.overlay is not None:
                _write_overlay(overlay_dir / _overlay_name(item.field), outcome.overlay)
        summary = _summary(registry, layout, fields, ran, skipped, time.perf_counter() - started)
        summary["registry"] = str(registry_path)
        summary["field_order"] = found.order
        summary["images_not_in_order_file"] = found.unlisted
        summary["rotation"] = {"deg": rotation, "from": rotation_source,
                               "fields_segmented_at": {f"{deg:g}": n for deg, n in rotations.items()}}
        summary["pixel_size_um"] = _pixel_size_summary(fields, pixel_sizes)
        summary["warnings"] = _pattern_warnings(registry, layout, templates)
        for record in registry.fields(layout.batch_id):
            if record.status in ("failed", "unreadable", "ambiguous") and \
                    record.field in {f.field for f in fields}:
                summary["problems"].append({"field": record.field, "status": record.status,
                                            "file": record.file, "detail": record.detail})
        summary["problems"] += gone
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_summary(summary)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _overlay_name(field: int) -> str:
    return f"field_{field:04d}.jpg"


def _with_sha(record, digest: str):
    from dataclasses import replace

    return replace(record, sha256=digest)


def _check_pixel_sizes(fields: list[FieldImage]) -> None:
    """Refuse pixel sizes that are not positive; fields without one need the label size
    found in their image (edge_app.label_size), or --pixel-um when that cannot be."""
    from importlib.util import find_spec

    bad = [f.path.name for f in fields if f.pixel_size_um is not None and not f.pixel_size_um > 0]
    unknown = [f.path.name for f in fields if f.pixel_size_um is None]
    if bad or (unknown and find_spec("edge_app.label_size") is None):
        names = bad or unknown
        raise PufError(f"{'a pixel size that is not positive' if bad else 'no pixel size'} for "
                       f"{', '.join(names[:3])}{' and more' if len(names) > 3 else ''}: give --pixel-um")


def _field_outcome(item: FieldImage, layout, args, rotation: float, templates, sig, load_image,
                   expected_shift_um: tuple[float, float], find_rotation: bool = False):
    """Segment one field; a field that cannot be read or segmented becomes a record that
    says why, never an exception that stops the batch."""
    from edge_app.registry import FieldRecord, LabelRecord

    def failed(status: str, detail: str) -> FieldOutcome:
        labels = []
        if 0 <= item.field < layout.fields_per_batch:
            for slot in range(layout.labels_per_field):
                row, col = divmod(slot, layout.label_cols)
                labels.append(LabelRecord(layout.label_id(item.field, slot), layout.batch_id,
                                          item.field, slot, row, col, "missing",
                                          layout.pattern_of(item.field, slot), status))
        return FieldOutcome(FieldRecord(layout.batch_id, item.field, status, item.path.name, sig,
                                        detail, args.method), labels, [], {})

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
            from edge_app.label_size import estimate_label_px

            side_px = estimate_label_px(image, border_frac=layout.border_width_um / layout.label_size_um)
            if not side_px:
                return failed("failed", "no label size found in the image: give --pixel-um")
            pixel_size_um = layout.label_size_um / side_px
        return segment_field(image, layout, item.field, float(pixel_size_um),
                             method=args.method, crop_size=args.crop_size, rotation_deg=rotation,
                             templates=templates, max_shift_um=args.max_shift_um,
                             expected_shift_um=expected_shift_um,
                             overlay=args.overlay, file=item.path.name, sig=sig,
                             find_rotation=find_rotation)
    except PufError as error:
        return failed("failed", str(error))
    except Exception as error:  # noqa: BLE001 - a bad field must not stop the batch
        return failed("failed", f"{type(error).__name__}: {error}")


def _write_overlay(path: Path, picture) -> None:
    import cv2

    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if ok:
        _write_atomically(path, data.tobytes())


def _summary(registry, layout, fields: list[FieldImage], ran: int, skipped: int,
             seconds: float) -> dict:
    counts = registry.counts(layout.batch_id)
    reasons = Counter()
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
    """The pixel size the fields segmented now were cut at, and where it came from."""
    values = sorted(used)
    median = round(values[len(values) // 2], 4) if values else None
    found = any(f.pixel_size_um is None for f in fields)
    return {"median": median, "from": "the labels' size in the images" if found else "the options or manifest"}


def _pattern_warnings(registry, layout, templates) -> list[str]:
    """Say so when labels found have no pattern class: training cannot use them."""
    if UNKNOWN_PATTERN not in layout.patterns:
        return []
    if templates is None:
        return ["the labels have no pattern class (the layout does not know them and no pattern "
                "templates were given): give --templates FILE.npz (the pattern set's templates, "
                "as `puf design` writes them) to read them from the glyphs, or --layout with the "
                "batch's patterns, before `puf train`"]
    unread = sum(label.pattern == UNKNOWN_PATTERN
                 for label in registry.labels(layout.batch_id, status="found"))
    return [f"{unread} labels found have no pattern class: their glyph did not read the right way "
            "up with the templates given"] if unread else []


def _print_summary(summary: dict) -> None:
    out = sys.stdout
    fields, labels = summary["fields"], summary["labels"]
    print(f"\nbatch {summary['batch_id']}  ({summary['seconds']} s, segmentation "
          f"{summary['segment_ms_per_field']} ms a field)", file=out)
    rows = [("fields listed", fields["listed"]), ("  segmented now", fields["segmented_now"]),
            ("  already recorded", fields["skipped"])]
    rows += [(f"  {status}", fields.get(status, 0)) for status in
             ("done", "ambiguous", "failed", "unreadable") if fields.get(status)]
    rows += [("labels expected", labels["expected"])]
    rows += [(f"  {status}", labels.get(status, 0)) for status in
             ("found", "enrolled", "held_out", "rejected", "missing") if labels.get(status)]
    rows += [(f"    {why}", n) for why, n in summary["labels_not_found_why"].items()]
    rows += [("candidates rejected", sum(summary["candidates_rejected_why"].values()))]
    rows += [(f"  {why}", n) for why, n in summary["candidates_rejected_why"].items()]
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        print(f"{name:<{width}}{value:>8}", file=out)
    if summary["problems"]:
        print("\nfields with problems:", file=out)
        for problem in summary["problems"]:
            print(f"  field {problem['field']:>4}  {problem['status']:<10} {problem['detail']}",
                  file=out)
    rotation, pixel = summary["rotation"], summary["pixel_size_um"]
    print(f"\nfield order: {summary['field_order']}", file=out)
    if summary["images_not_in_order_file"]:
        names = summary["images_not_in_order_file"]
        print(f"images not in the order file, skipped: {len(names)} ({', '.join(names[:5])}"
              f"{', ...' if len(names) > 5 else ''})", file=out)
    print(f"rotation: {rotation['deg']:g} deg, from {rotation['from']}", file=out)
    if pixel["median"] is not None:
        print(f"pixel size: {pixel['median']:g} um, from {pixel['from']}", file=out)
    print(f"registry: {summary['registry']}", file=out)
