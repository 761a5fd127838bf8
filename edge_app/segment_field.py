"""Cutting one photographed field into labels, and saying what became of every label of
the field: found (with its crop), rejected (with the reason), or missing.

`segment_field` is the domain step of `puf segment` (edge_app.segment_batch runs it over a
batch): it takes the field's image and layout, what is known of this field (`FieldShot`)
and how every field of the batch is cut (`CutOptions`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_app.batch_dir import BatchDir
from edge_app.label_crop import CROP_SIZE
from edge_app.layout import UNKNOWN_PATTERN

if TYPE_CHECKING:
    import numpy as np

    from edge_app.orientation import GlyphMatch, PatternTemplates
    from edge_app.registry import FieldRecord, LabelRecord, RejectionRecord

# why a label has no crop, besides segmentation's own reasons (edge_app.segment.REASONS)
FIELD_REASONS = {
    "neighbour": "a neighbouring field's label",
    "off-lattice": "off the label lattice",
    "ambiguous": "field position ambiguous",
    "not found": "not found",
    "unreadable": "field image unreadable",
    "failed": "field failed",
    # why a label found has no pattern from its glyph (a plain folder's labels)
    "glyph unmatched": "its glyph matches none of the pattern set's glyphs",
    "glyph turned": "its glyph reads turned from the field's labels",
}


MIN_TURN_VOTES = 2  # clearly read glyphs a field needs to say the camera is turned
TURN_MAJORITY = 2 / 3  # of them, how many must agree on the turn

@dataclass(frozen=True)
class CutOptions:
    """How every field of a batch is cut. With `find_rotation` and templates, a field whose
    glyphs mostly read a quarter turn off is segmented again turned by it (a camera mounted
    turned)."""

    method: str = "fast"  # "fast", or "paper": the source paper's method
    crop_size: int = CROP_SIZE  # crop side in px
    max_shift_um: float = 220.0  # how far a field may lie from where it was planned
    overlay: bool = False  # also draw the field with what was found, for a person
    templates: PatternTemplates | None = None  # glyph templates: patterns, slips, turns
    find_rotation: bool = False


@dataclass(frozen=True)
class FieldShot:
    """One field's image as the batch knows it."""

    field: int
    pixel_size_um: float
    rotation_deg: float = 0.0  # the labels' expected angle in the image
    expected_shift_um: tuple[float, float] = (0.0, 0.0)  # where the stage says it went, off plan
    file: str | None = None
    sig: str | None = None  # the image file's signature, to tell a changed image


def turned_camera_hint(templates) -> str:
    """What to do about a field whose labels fit no lattice offset: often a turned camera."""
    hint = "if the camera is turned, give --rotation-deg (90, 180 or 270)"
    return hint if templates is not None else \
        f"{hint}, or pattern templates (--templates) to find the turn from the glyphs"


def reason_text(code: str | None) -> str:
    from edge_app.segment import REASONS

    return REASONS.get(code or "", FIELD_REASONS.get(code or "", code or "unknown"))


@dataclass
class FieldOutcome:
    record: FieldRecord
    labels: list[LabelRecord]
    rejections: list[RejectionRecord]
    crops: dict[str, np.ndarray]  # label id -> crop to write
    overlay: np.ndarray | None = None  # BGR image
    rotation_deg: float | None = None  # the rotation the field was segmented with
    pixel_size_um: float | None = None  # the pixel size it was segmented with


def segment_field(image, layout, shot: FieldShot, how: CutOptions) -> FieldOutcome:  # noqa: C901 -- to split (issue 26)
    """Segment one field image and say what became of every label of the field."""
    import numpy as np

    from edge_app.registry import FieldRecord, LabelRecord, RejectionRecord
    from edge_app.segment import segment
    from edge_app.slots import assign_slots, slot_corners_um

    field, pixel_size_um, rotation_deg, templates = shot.field, shot.pixel_size_um, shot.rotation_deg, how.templates
    label_px = layout.label_size_um / pixel_size_um

    def cut(rotation: float):
        return segment(image, label_px, method=how.method, k=layout.labels_per_field,
                       crop_size=how.crop_size, border_frac=layout.border_width_um / layout.label_size_um,
                       rotation_deg=rotation, templates=templates)

    result = cut(rotation_deg)
    turns = glyph_quarter_turns(result.labels, templates) if how.find_rotation and templates is not None else None
    if turns:
        rotation_deg = (rotation_deg - 90.0 * turns + 180.0) % 360.0 - 180.0
        result = cut(rotation_deg)
    readings = [glyph_reading(label.glyph, templates) for label in result.labels]
    use_glyphs = templates is not None and set(layout.patterns) <= set(templates.names)
    patterns = [pattern for pattern, _ in readings] if use_glyphs else None
    assignment = assign_slots([label.centre for label in result.labels],
                              [label.angle_deg for label in result.labels], layout, field,
                              pixel_size_um, result.image_size, patterns, how.max_shift_um,
                              shot.expected_shift_um)
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

    for label, (read, unread), place, why in zip(result.labels, readings, assignment.slots, assignment.reasons,
                                                 strict=True):
        if place is None or why is not None or assignment.status != "ok":
            reason = why or "ambiguous"
            rejections.append(RejectionRecord(reason, reason_text(reason),
                                              place.label_id if place else None,
                                              corners_json(label.corners)))
            continue
        quality = label.quality
        fields = base(place.slot)
        if fields["pattern"] == UNKNOWN_PATTERN:  # a plain folder's labels: as the glyph reads
            fields["pattern"] = read or UNKNOWN_PATTERN
            fields["reason"] = unread
        records[place.slot] = LabelRecord(
            **fields, status="found",
            crop_path=BatchDir.crop_name(place.label_id), corners=corners_json(label.corners),
            orientation=label.orientation,
            glyph_pattern=label.glyph.pattern if label.glyph else None,
            glyph_score=round(label.glyph.score, 4) if label.glyph else None,
            quality=quality.rounded())
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
    record = FieldRecord(layout.batch_id, field, status, shot.file, shot.sig, detail, how.method, found,
                         len(rejections), shift[0], shift[1], round(result.elapsed_ms, 3))
    picture = None
    if how.overlay:
        from edge_app.segment_overlay import draw_overlay

        picture = draw_overlay(image, result, records, expected, rejections, layout)
    return FieldOutcome(record, [records[s] for s in sorted(records)], rejections, crops, picture,
                        rotation_deg, pixel_size_um)


def glyph_reading(glyph: GlyphMatch | None, templates: PatternTemplates | None) -> tuple[str | None, str | None]:
    """The pattern a label's glyph names, or None and why not (a FIELD_REASONS code; None
    without templates). A glyph scoring below the set's floor is none of its glyphs,
    whichever it resembles most; one read turned is not trusted either."""
    if glyph is None or templates is None:
        return None, None
    if glyph.score < templates.score_floor:
        return None, "glyph unmatched"
    if glyph.quarter_turns != 0:
        return None, "glyph turned"
    return glyph.pattern, None


def glyph_quarter_turns(labels: list, templates: PatternTemplates) -> int | None:
    """The quarter turn (counter-clockwise on screen) that a clear majority of the clearly
    read glyphs of a field show, or None when too few were read or they disagree. Glyphs
    below the set's floor do not vote: they are not its glyphs."""
    from edge_app.segment import ORIENTATION_MARGIN

    turns = [label.glyph.quarter_turns for label in labels
             if label.glyph is not None and label.glyph.orientation_margin >= ORIENTATION_MARGIN
             and label.glyph.score >= templates.score_floor]
    if len(turns) < MIN_TURN_VOTES:
        return None
    turn, votes = Counter(turns).most_common(1)[0]
    return turn if votes >= TURN_MAJORITY * len(turns) else None
