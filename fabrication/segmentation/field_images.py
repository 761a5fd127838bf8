"""Which images of a batch folder are which fields, and the layout of a plain folder.

A photographed batch says it itself: `puf photograph` writes BATCH_DIR/fields/manifest.json
(field number, file, pixel size and stage position of every field). Without the manifest,
OME-TIFF fields say it in their OME metadata (fabrication.ome_field): pixel size and stage
position, and the field number when `puf photograph --mm-config` wrote them. A plain folder of
images from someone else's microscope says nothing, so its field order comes from an
order file (CSV with the columns file,field) or from the sorted file names: never from
digits that happen to be in a name, which are as often a camera's timestamp
(`IMG_20251130_101500.png`) as a field number.

A plain folder's layout is a BatchLayout file (as `puf design` writes it), or is built
from the label geometry given on the command line, its fields in one row and their
pattern classes unknown.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from edge_app.errors import PufError
from edge_app.layout import UNKNOWN_PATTERN, BatchLayout
from edge_app.pattern_set import PatternSet
from fabrication.batch_dir import BatchDir, FieldImage
from fabrication.ome_field import read_field

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class FieldList:
    """The fields to segment, how their order was found, and the images left out."""

    fields: list[FieldImage]
    order: str  # "stage manifest", "OME metadata", "order file NAME" or "sorted file names"
    unlisted: list[str] = field(default_factory=list)  # images the order file does not name


def find_fields(batch_dir: Path, pixel_um: float | None, order: Path | None = None) -> FieldList:
    """The batch's field images: from the order file when one is given, else from the
    stage manifest (BATCH_DIR/fields/manifest.json), else the images in BATCH_DIR/fields
    (or BATCH_DIR) numbered 0, 1, ... in the order of their sorted names."""
    batch = BatchDir(batch_dir)
    fields_dir = batch.fields_dir
    manifest = batch.fields_manifest() if order is None else None
    if manifest is not None:
        return FieldList(manifest.images(fields_dir, pixel_um), "stage manifest")
    folder = fields_dir if fields_dir.is_dir() else batch_dir
    if not folder.is_dir():
        raise PufError(f"{batch_dir} is not a folder")
    paths = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))
    if order is None:
        if not paths:
            raise PufError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        metas = [read_field(p) or {} for p in paths]
        if all("field" in meta for meta in metas):  # OME-TIFFs from `puf photograph --mm-config`
            numbered = sorted(zip((meta["field"] for meta in metas), paths, metas, strict=True))
            for (number, first, _), (again, second, _) in pairwise(numbered):
                if number == again:
                    raise PufError(f"{first.name} and {second.name} both say they are field {number}")
            return FieldList([_field(n, p, pixel_um, m) for n, p, m in numbered], "OME metadata")
        return FieldList([_field(i, p, pixel_um, m) for i, (p, m) in enumerate(zip(paths, metas, strict=True))],
                         "sorted file names")
    numbers = read_order(order, folder)
    listed = set(numbers.values())
    unlisted = [p.name for p in paths if p.resolve() not in listed]
    fields = [_field(number, path, pixel_um, read_field(path) or {}) for number, path in sorted(numbers.items())]
    return FieldList(fields, f"order file {order.name}", unlisted)


def _field(number: int, path: Path, pixel_um: float | None, ome: dict) -> FieldImage:
    """A field image with what its OME metadata says (pixel size, stage position); a pixel
    size given on the command line wins."""
    stage = ome.get("stage_um")
    source = "--pixel-um" if pixel_um else "the OME metadata" if ome.get("pixel_size_um") else None
    return FieldImage(number, path, pixel_um or ome.get("pixel_size_um"),
                      None if stage is None else (stage[0], stage[1]), source)


def read_order(path: Path, folder: Path) -> dict[int, Path]:
    """An order file: a CSV with a header naming the columns `file` (relative to the
    image folder) and `field` (a whole number); field number to image path."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PufError(f"cannot read the order file {path}: {error}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "file" not in header or "field" not in header:
        raise PufError(f"the order file {path} must start with a header naming the columns file,field "
                       f"(got {','.join(header) or 'nothing'})")
    file_col, field_col = header.index("file"), header.index("field")
    numbers: dict[int, Path] = {}
    rows_of: dict[object, int] = {}
    missing = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row] + [""] * len(header)
        name, number = cells[file_col], cells[field_col]
        where = f"the order file {path.name}, row {line}"
        if not name:
            raise PufError(f"{where}: no file named")
        if not re.fullmatch(r"\d+", number):
            raise PufError(f"{where}: field {number!r} is not a whole number >= 0")
        image = (folder / name).resolve()
        for key, what in ((int(number), f"field {int(number)}"), (image, f"file {name}")):
            if key in rows_of:
                raise PufError(f"{where}: {what} is already given in row {rows_of[key]}")
            rows_of[key] = line
        if not image.is_file():
            missing.append(f"{name} (row {line})")
        numbers[int(number)] = image
    if missing:
        raise PufError(f"the order file {path.name} names images that are not in {folder}: "
                       f"{', '.join(missing[:3])}{' and more' if len(missing) > 3 else ''}")
    if not numbers:
        raise PufError(f"the order file {path} lists no fields")
    return numbers


def folder_layout(batch_dir: Path, fields: list[FieldImage], *, layout_file: Path | None = None,
                  batch_id: str | None = None,
                  labels: tuple[int, int] = (BatchLayout.label_cols, BatchLayout.label_rows),
                  label_um: float = BatchLayout.label_size_um, border_um: float = BatchLayout.border_width_um,
                  pitch_um: float = BatchLayout.pitch_um,
                  glyph_um: float | None = None, pattern_set: PatternSet | None = None) -> BatchLayout:
    """The layout file given, else the batch's layout.json, else a layout built from the
    label geometry: the fields in one row, every pattern class unknown (read from the
    glyphs when `pattern_set` is given; the layout carries it to the registry)."""
    path = layout_file or BatchDir(batch_dir).layout_path
    if layout_file is not None or path.exists():
        return BatchLayout.load(path)
    cols, rows = labels
    batch_id = batch_id or re.sub(r"[^A-Za-z0-9_]", "_", batch_dir.resolve().name)[:32]
    count = max(f.field for f in fields) + 1
    return BatchLayout(batch_id, (UNKNOWN_PATTERN,) * (cols * rows * count), label_um,
                       border_um, pitch_um, glyph_size_um=glyph_um or 0.4 * label_um,
                       label_cols=cols, label_rows=rows, field_cols=count, field_rows=1,
                       pattern_set=pattern_set)

