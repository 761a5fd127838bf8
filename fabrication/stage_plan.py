"""The microscope plan: one stage position per field of a batch, and its files.

The plan is plain data, apart from the runner that drives a microscope through it (the
way useq-schema describes an acquisition apart from pymmcore-plus's engine). It is written
in three forms that say the same thing:

- a Micro-Manager 2 position list (``.pos``: the "Micro-Manager Property Map" JSON that
  Micro-Manager's Stage Position List loads and saves; each position keeps its field index
  as the string property ``Field``, which Micro-Manager preserves when it re-saves a list);
- a CSV for people and spreadsheets;
- a useq-schema ``MDASequence`` (JSON), the form pymmcore-plus runs.

`read_positions` loads any of them back, so a list adjusted in Micro-Manager and saved
again still drives `puf photograph`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.atomic_write import replacing
from edge_app.errors import PufError, require_module
from edge_app.json_files import parse_json
from edge_app.layout import BatchLayout
from fabrication.calibration import StageCalibration

if TYPE_CHECKING:
    import useq

CSV_HEADER = ("order", "field", "label", "x_um", "y_um", "grid_row", "grid_col")
_MM_FORMAT = "Micro-Manager Property Map"
_FIELD_PROPERTY = "Field"


@dataclass(frozen=True)
class StagePosition:
    """Where the stage goes to photograph one field (stage micrometres)."""

    field: int  # field index in the batch layout
    label: str  # unique name of the position, e.g. "B0001-F0007"
    x_um: float
    y_um: float
    grid_row: int  # the field's row and column in the batch
    grid_col: int

    def __post_init__(self) -> None:
        for name in ("field", "grid_row", "grid_col"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PufError(f"position {self.label!r}: {name} must be a whole number "
                               f">= 0, got {value!r}")
        if not isinstance(self.label, str) or not self.label.strip():
            raise PufError(f"position of field {self.field}: the label must be a non-empty text")
        for name in ("x_um", "y_um"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise PufError(f"position {self.label!r}: {name} must be a finite number, "
                               f"got {value!r}")


def position_label(layout: BatchLayout, field: int) -> str:
    return f"{layout.batch_id}-F{field:04d}"


def plan_positions(layout: BatchLayout, calibration: StageCalibration,
                   serpentine: bool = True) -> list[StagePosition]:
    """One position per field, at the field's centre, in visiting order.

    Serpentine order runs every other row of fields backwards, so the stage steps to a
    neighbour instead of travelling back across the batch after each row.
    """
    positions = []
    for row in range(layout.field_rows):
        cols = range(layout.field_cols)
        if serpentine and row % 2:
            cols = cols[::-1]
        for col in cols:
            field = row * layout.field_cols + col
            x, y = calibration.design_to_stage(*layout.field_center_um(field))
            positions.append(StagePosition(field, position_label(layout, field), x, y, row, col))
    return positions


def validate_positions(positions: Sequence[StagePosition]) -> None:
    """A plan must name each position and each field once."""
    for attribute in ("label", "field"):
        seen: set = set()
        for position in positions:
            value = getattr(position, attribute)
            if value in seen:
                raise PufError(f"the plan has {attribute} {value!r} twice")
            seen.add(value)


# ---- writers -----------------------------------------------------------------------------

def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so a full disk never leaves half a plan behind."""
    try:
        with replacing(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        raise PufError(f"cannot write {path}: {error.strerror or error}") from None


def _mm(kind: str, value: object) -> dict:
    """One typed value of a Micro-Manager property map."""
    return {"type": kind, "array" if isinstance(value, list) else "scalar": value}


def micromanager_position_list(positions: Sequence[StagePosition],
                               xy_stage: str = "XYStage") -> dict:
    """The Micro-Manager 2 position list as a JSON-ready dict (keys in Micro-Manager's order)."""
    validate_positions(positions)
    entries = [
        {
            "DefaultXYStage": _mm("STRING", xy_stage),
            "DefaultZStage": _mm("STRING", ""),
            "DevicePositions": _mm("PROPERTY_MAP", [{
                "Device": _mm("STRING", xy_stage),
                "Position_um": _mm("DOUBLE", [float(p.x_um), float(p.y_um)]),
            }]),
            "GridCol": _mm("INTEGER", p.grid_col),
            "GridRow": _mm("INTEGER", p.grid_row),
            "Label": _mm("STRING", p.label),
            "Properties": _mm("PROPERTY_MAP", {_FIELD_PROPERTY: _mm("STRING", str(p.field))}),
        }
        for p in positions
    ]
    return {
        "encoding": "UTF-8",
        "format": _MM_FORMAT,
        "major_version": 2,
        "minor_version": 0,
        "map": {"StagePositions": _mm("PROPERTY_MAP", entries)},
    }


def write_micromanager_pos(path: Path, positions: Sequence[StagePosition],
                           xy_stage: str = "XYStage") -> None:
    _write_text(path, json.dumps(micromanager_position_list(positions, xy_stage), indent=2))


def write_csv(path: Path, positions: Sequence[StagePosition]) -> None:
    validate_positions(positions)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for order, p in enumerate(positions):
        # repr keeps every bit of a float, so the CSV reads back exactly
        writer.writerow([order, p.field, p.label, repr(float(p.x_um)), repr(float(p.y_um)),
                         p.grid_row, p.grid_col])
    _write_text(path, out.getvalue())


def mda_sequence(positions: Sequence[StagePosition], exposure_ms: float,
                 channel: str | None = None, channel_group: str = "Channel") -> useq.MDASequence:
    """The plan as a useq-schema ``MDASequence``.

    With a channel (a preset of `channel_group` in the rig's configuration) the exposure
    goes with the channel; without one it goes into the sequence's setup event, which
    pymmcore-plus applies before the first position. Field indices travel in the
    sequence's metadata.
    """
    require_module("useq", "factory")
    import useq

    validate_positions(positions)
    if not (math.isfinite(exposure_ms) and exposure_ms > 0):
        raise PufError(f"exposure must be a positive number of milliseconds, got {exposure_ms}")
    stage_positions = [
        useq.Position(x=p.x_um, y=p.y_um, name=p.label, grid_row=p.grid_row, grid_col=p.grid_col)
        for p in positions
    ]
    options: dict = {}
    if channel is None:
        options["setup"] = useq.MDAEvent(exposure=exposure_ms)
    else:
        options["channels"] = [useq.Channel(config=channel, group=channel_group,
                                            exposure=exposure_ms)]
    return useq.MDASequence(stage_positions=tuple(stage_positions),
                            metadata={"fields": [p.field for p in positions]}, **options)


def write_mda_sequence(path: Path, positions: Sequence[StagePosition], exposure_ms: float,
                       channel: str | None = None, channel_group: str = "Channel") -> None:
    sequence = mda_sequence(positions, exposure_ms, channel, channel_group)
    # not exclude_unset: it drops the setup event's action type, and useq cannot load that
    _write_text(path, sequence.model_dump_json(exclude_none=True, indent=1))


# ---- readers -----------------------------------------------------------------------------

def read_positions(path: Path) -> list[StagePosition]:
    """Load a plan written by this module (CSV, Micro-Manager ``.pos`` or useq JSON),
    in its visiting order. The kind is told by the content, not the file name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PufError(f"no stage positions at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PufError(f"cannot read the stage positions {path}: {error}") from None
    try:
        if text.lstrip().startswith("{"):
            data = parse_json(text, "stage positions")
            if isinstance(data, dict) and data.get("format") == _MM_FORMAT:
                positions = _from_micromanager(data)
            else:
                positions = _from_mda_sequence(text)
        else:
            positions = _from_csv(text)
        if not positions:
            raise PufError("it holds no positions")
        validate_positions(positions)
    except PufError as error:
        raise PufError(f"{path}: {error}") from None
    return positions


def _from_csv(text: str) -> list[StagePosition]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:  # a line longer than the csv module takes, say
        raise PufError(f"not a stage-position CSV: {error}") from None
    if not rows or tuple(h.strip() for h in rows[0]) != CSV_HEADER:
        raise PufError(f"not a stage-position CSV: the header must be {','.join(CSV_HEADER)}")
    ordered = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(CSV_HEADER):
            raise PufError(f"line {line} has {len(row)} values, expected {len(CSV_HEADER)}")
        try:
            order, field, grid_row, grid_col = (int(row[i]) for i in (0, 1, 5, 6))
            x_um, y_um = float(row[3]), float(row[4])
        except ValueError as error:
            raise PufError(f"line {line}: {error}") from None
        try:
            ordered.append((order, StagePosition(field, row[2], x_um, y_um, grid_row, grid_col)))
        except PufError as error:
            raise PufError(f"line {line}: {error}") from None
    orders = sorted(order for order, _ in ordered)
    if orders != list(range(len(orders))):
        raise PufError("the order column must number the rows 0, 1, 2, ... once each")
    return [position for _, position in sorted(ordered, key=lambda item: item[0])]


def _mm_value(entry: dict, key: str, kind: str, where: str):
    item = entry.get(key)
    if not isinstance(item, dict) or item.get("type") != kind:
        raise PufError(f"{where}: {key} is missing or not of type {kind}")
    if "scalar" in item:
        return item["scalar"]
    if "array" in item:
        return item["array"]
    raise PufError(f"{where}: {key} has no value")


def _from_micromanager(data: dict) -> list[StagePosition]:
    if data.get("major_version") != 2:
        raise PufError(f"Micro-Manager property map version {data.get('major_version')!r} "
                       "is not supported (expected 2)")
    try:
        entries = _mm_value(data["map"], "StagePositions", "PROPERTY_MAP", "the position list")
    except (KeyError, TypeError, AttributeError):
        raise PufError("a Micro-Manager property map without StagePositions") from None
    if not isinstance(entries, list):
        raise PufError("StagePositions is not a list")
    positions: list[StagePosition] = []
    for index, entry in enumerate(entries):
        where = f"position {index}"
        if not isinstance(entry, dict):
            raise PufError(f"{where} is not a property map")
        label = _mm_value(entry, "Label", "STRING", where)
        where = f"position {index} ({label!r})"
        xy_stage = _mm_value(entry, "DefaultXYStage", "STRING", where)
        xy = [
            _mm_value(device, "Position_um", "DOUBLE", where)
            for device in _mm_value(entry, "DevicePositions", "PROPERTY_MAP", where)
            if isinstance(device, dict)
            and _mm_value(device, "Device", "STRING", where) == xy_stage
        ]
        if len(xy) != 1 or not isinstance(xy[0], list) or len(xy[0]) != 2:
            raise PufError(f"{where}: no single x, y position of its XY stage {xy_stage!r}")
        field: object = entry
        for key in ("Properties", "scalar", _FIELD_PROPERTY, "scalar"):
            field = field.get(key) if isinstance(field, dict) else None
        if not (isinstance(field, str) and field.isdigit()):
            raise PufError(f"{where}: the property {_FIELD_PROPERTY!r} does not name a field "
                           "index (was the list written by `puf design`?)")
        grid_row = _mm_value(entry, "GridRow", "INTEGER", where)
        grid_col = _mm_value(entry, "GridCol", "INTEGER", where)
        positions.append(
            StagePosition(int(field), label, xy[0][0], xy[0][1], grid_row, grid_col))
    return positions


def _from_mda_sequence(text: str) -> list[StagePosition]:
    require_module("useq", "factory")
    import pydantic
    import useq

    try:
        sequence = useq.MDASequence.model_validate_json(text)
    except pydantic.ValidationError as error:
        raise PufError(f"neither a Micro-Manager position list nor a useq MDASequence: "
                       f"{error.error_count()} problem(s), first: {error.errors()[0]['msg']}") \
            from None
    fields = sequence.metadata.get("fields")
    stage_positions = list(sequence.stage_positions)
    if not isinstance(fields, list) or len(fields) != len(stage_positions):
        raise PufError("the MDASequence's metadata does not list the field of every position")
    positions = []
    for field, p in zip(fields, stage_positions, strict=True):
        if p.x is None or p.y is None or p.name is None or p.grid_row is None or p.grid_col is None:
            raise PufError(f"position of field {field} lacks x, y, a name, or its grid row and column")
        positions.append(StagePosition(field, p.name, p.x, p.y, p.grid_row, p.grid_col))
    return positions
