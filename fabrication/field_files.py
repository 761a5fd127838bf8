"""A photographed field's TIFF in the batch folder, written whole (`edge_app.atomic_write`) with
its simulator truth, and its manifest entry read back: the simulated microscope
(`fabrication.photograph`) and a real rig (`fabrication.mda_photograph`) write fields alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge_app.atomic_write import replacing
from edge_app.errors import PufError, cannot_write
from fabrication import ome_field
from fabrication.batch_dir import BatchDir
from fabrication.ome_field import read_field


@dataclass(frozen=True)
class FieldJob:
    field: int
    label: str
    x_um: float
    y_um: float


def write_field(batch: BatchDir, batch_id: str, job: FieldJob, snapshot, ome: bool = False) -> dict:
    """Write one field's TIFF (atomically) and truth; return its manifest entry. With `ome`
    the TIFF is an OME-TIFF (fabrication.ome_field), else its description is the metadata as JSON."""
    import tifffile

    meta = {
        "batch_id": batch_id,
        "field": job.field,
        "position_label": job.label,
        "stage_um": [round(v, 3) for v in snapshot.stage_um],
        "exposure_ms": snapshot.exposure_ms,
        "pixel_size_um": snapshot.pixel_size_um,
    }
    image = snapshot.image
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    path = batch.field_path(job.field)
    try:
        if snapshot.truth is not None:
            with replacing(batch.truth_path(job.field)) as tmp:
                tmp.write_text(json.dumps(snapshot.truth))
        with replacing(path, suffix=".tif") as tmp:
            if ome:
                capture = {key: snapshot.extra[key] for key in ome_field.CAPTURE_KEYS if snapshot.extra.get(key)}
                ome_field.write_field(tmp, image, {**meta, **capture})
            else:
                tifffile.imwrite(tmp, image, photometric="rgb" if image.ndim == 3 else "minisblack",
                                 description=json.dumps(meta), metadata=None,
                                 **ome_field.resolution_tags(snapshot.pixel_size_um))
    except OSError as error:
        raise cannot_write(path, error, "the fields written so far are kept") from None
    return {**meta, "file": path.name}


def read_field_meta(path: Path) -> dict:
    """A written field's manifest entry, from its OME metadata or its JSON description."""
    import tifffile

    try:
        meta = read_field(path)
        if meta is not None:
            return {**meta, "file": path.name}
        with tifffile.TiffFile(path) as tif:
            return {**json.loads(tif.pages.first.description), "file": path.name}
    except (OSError, ValueError, json.JSONDecodeError, tifffile.TiffFileError) as error:
        raise PufError(f"{path} is damaged ({error}); delete it and run again") from None
