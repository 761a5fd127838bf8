"""The batch layout: where every label of a batch is, in physical units.

One data model used by every stage: the CAD and laser job are drawn from it, the stage
positions are planned from it, the simulated microscope renders it, and segmentation
uses it to give each crop its label id. It lives in `edge_app` because the device's
segmentation needs it and `edge_app` may not import `fabrication`.

Design coordinates are micrometres, x to the right and y downwards (image convention),
with the origin at the top-left corner of the batch: label (field 0, slot 0) has its
centre at (pitch/2, pitch/2). Fields tile the batch row by row; inside a field, slots are
numbered row by row (slot = row * label_cols + col).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_app.errors import PufError
from edge_app.ids import BATCH, check_id
from edge_app.json_files import load_json, write_json
from edge_app.pattern_set import PatternSet

LAYOUT_FORMAT = 1
UNKNOWN_PATTERN = "unknown"  # a label whose glyph the layout does not know (a folder of images)
_LABEL_ID = re.compile(rf"(?P<batch>{BATCH})-(?P<field>\d{{4}})-(?P<slot>\d{{2}})")


@dataclass(frozen=True)
class BatchLayout:
    batch_id: str
    # pattern class name of every label, in label index order (field-major, then slot)
    patterns: tuple[str, ...]
    label_size_um: float = 200.0  # outer side of the square border
    border_width_um: float = 10.0
    pitch_um: float = 250.0  # centre-to-centre distance of neighbouring labels
    glyph_size_um: float = 80.0  # side of the square the pattern glyph is fitted into
    label_cols: int = 4  # labels per field, across and down
    label_rows: int = 3
    field_cols: int = 20  # fields per batch, across and down
    field_rows: int = 10
    # the glyphs the patterns name (`edge_app.pattern_set`); None: the built-in set, or a
    # folder of images whose patterns are not known
    pattern_set: PatternSet | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(self.patterns))
        if isinstance(self.pattern_set, dict):
            object.__setattr__(self, "pattern_set", PatternSet.from_dict(self.pattern_set))
        self.validate()

    # ---- sizes -------------------------------------------------------------------
    @property
    def labels_per_field(self) -> int:
        return self.label_cols * self.label_rows

    @property
    def fields_per_batch(self) -> int:
        return self.field_cols * self.field_rows

    @property
    def label_count(self) -> int:
        return self.labels_per_field * self.fields_per_batch

    @property
    def field_size_um(self) -> tuple[float, float]:
        return self.label_cols * self.pitch_um, self.label_rows * self.pitch_um

    @property
    def batch_size_um(self) -> tuple[float, float]:
        width, height = self.field_size_um
        return self.field_cols * width, self.field_rows * height

    @property
    def gap_um(self) -> float:
        """Free film between the outer edges of two neighbouring borders."""
        return self.pitch_um - self.label_size_um

    # ---- positions ---------------------------------------------------------------
    def field_origin_um(self, field: int) -> tuple[float, float]:
        self._check_field(field)
        width, height = self.field_size_um
        return (field % self.field_cols) * width, (field // self.field_cols) * height

    def field_center_um(self, field: int) -> tuple[float, float]:
        x0, y0 = self.field_origin_um(field)
        width, height = self.field_size_um
        return x0 + width / 2, y0 + height / 2

    def label_center_um(self, field: int, slot: int) -> tuple[float, float]:
        self._check_slot(slot)
        x0, y0 = self.field_origin_um(field)
        row, col = divmod(slot, self.label_cols)
        return x0 + (col + 0.5) * self.pitch_um, y0 + (row + 0.5) * self.pitch_um

    def slot_of(self, row: int, col: int) -> int:
        if not (0 <= row < self.label_rows and 0 <= col < self.label_cols):
            raise PufError(f"no slot at row {row}, column {col} in a "
                           f"{self.label_rows}x{self.label_cols} field")
        return row * self.label_cols + col

    # ---- identities --------------------------------------------------------------
    def label_index(self, field: int, slot: int) -> int:
        self._check_field(field)
        self._check_slot(slot)
        return field * self.labels_per_field + slot

    def label_id(self, field: int, slot: int) -> str:
        self.label_index(field, slot)
        return f"{self.batch_id}-{field:04d}-{slot:02d}"

    def pattern_of(self, field: int, slot: int) -> str:
        return self.patterns[self.label_index(field, slot)]

    # ---- validation and files ----------------------------------------------------
    def validate(self) -> None:
        check_id("batch", self.batch_id)
        for name in ("label_size_um", "border_width_um", "pitch_um", "glyph_size_um"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise PufError(f"{name} must be positive and finite, got {value}")
        for name in ("label_cols", "label_rows", "field_cols", "field_rows"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise PufError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.labels_per_field > 100:
            raise PufError(f"at most 100 labels per field, got {self.labels_per_field}")
        if self.fields_per_batch > 10000:
            raise PufError(f"at most 10000 fields per batch, got {self.fields_per_batch}")
        if self.pitch_um <= self.label_size_um:
            raise PufError(
                f"labels of {self.label_size_um:g} um do not fit at a pitch of "
                f"{self.pitch_um:g} um: the pitch must be larger than the label"
            )
        inner = self.label_size_um - 2 * self.border_width_um
        if inner <= 0:
            raise PufError(
                f"a border of {self.border_width_um:g} um leaves no inside in a "
                f"{self.label_size_um:g} um label"
            )
        if self.glyph_size_um > 0.8 * inner:
            raise PufError(
                f"a glyph of {self.glyph_size_um:g} um does not fit inside the border "
                f"(at most {0.8 * inner:g} um, so texture surrounds it)"
            )
        if len(self.patterns) != self.label_count:
            raise PufError(
                f"the layout names {len(self.patterns)} patterns for {self.label_count} labels"
            )
        if self.pattern_set is not None:
            known = set(self.pattern_set.names)
            strange = sorted(set(self.patterns) - known - {UNKNOWN_PATTERN})
            if strange:
                raise PufError(f"the layout names patterns {strange[:5]} that its pattern set "
                               f"{self.pattern_set.name!r} does not hold")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["patterns"] = list(self.patterns)
        data.pop("pattern_set")
        if self.pattern_set is not None:
            data["pattern_set"] = self.pattern_set.to_dict()
        return {"format": LAYOUT_FORMAT, **data}

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: object) -> BatchLayout:
        if not isinstance(data, dict) or data.get("format") != LAYOUT_FORMAT:
            raise PufError(f"not a batch layout of format {LAYOUT_FORMAT}")
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            return cls(**fields)
        except TypeError as error:
            raise PufError(f"batch layout has wrong fields: {error}") from None

    @classmethod
    def load(cls, path: Path) -> BatchLayout:
        return load_json(path, "batch layout", cls.from_dict)

    def _check_field(self, field: int) -> None:
        if not 0 <= field < self.fields_per_batch:
            raise PufError(f"field {field} is outside the batch (0..{self.fields_per_batch - 1})")

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.labels_per_field:
            raise PufError(f"slot {slot} is outside the field (0..{self.labels_per_field - 1})")


def parse_label_id(label_id: str) -> tuple[str, int, int]:
    """Split a label id into (batch id, field, slot)."""
    match = _LABEL_ID.fullmatch(label_id)
    if not match:
        raise PufError(f"{label_id!r} is not a label id (BATCH-FFFF-SS)")
    return match["batch"], int(match["field"]), int(match["slot"])
