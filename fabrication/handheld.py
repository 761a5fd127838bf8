"""Handheld re-captures of a simulated batch's labels (`puf photograph BATCH --sim --handheld N`).

A factory calibrates its threshold on an inspector's photos of labels whose ids it knows,
enrolled ones and ones never enrolled (`puf queries`, then `puf evaluate`). On the simulator
those photos come from the batch's etched film (`puf etch --sim`) through the handheld camera
model (`fabrication.sim.field_camera.capture_label`), named as `puf queries` reads a folder:

    OUT/LABEL_ID_K.jpg      the K-th photo (1..N) of that label

Which labels: some fields (``0-5,7``), some label ids, or every label of the batch. Photo K of
a label is the same image for the same seed, so a re-run keeps the photos already there
(``force`` takes them again); each is written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2

from edge_app.atomic_write import replacing
from edge_app.errors import PufError
from edge_app.layout import BatchLayout, parse_label_id
from fabrication.batch_dir import BatchDir
from fabrication.sim.field_camera import capture_label
from fabrication.sim.film import EtchedFilm

JPEG_QUALITY = 92  # a phone's usual


def parse_fields(spec: str, count: int) -> list[int]:
    """Field numbers from ``0-5,7`` (ranges inclusive), each below `count`."""
    fields: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise PufError(f"--fields {spec!r}: give field numbers and ranges, e.g. 0-5,7") from None
        if not 0 <= low <= high < count:
            raise PufError(f"--fields {spec!r}: {part.strip()} is not among the batch's fields 0-{count - 1}")
        fields.update(range(low, high + 1))
    return sorted(fields)


def chosen_labels(layout: BatchLayout, fields: str | None, label_ids: list[str]) -> list[tuple[int, int]]:
    """(field, slot) of every label named by `fields` or `label_ids`; every label when neither."""
    chosen: set[tuple[int, int]] = set()
    if fields:
        chosen.update((f, s) for f in parse_fields(fields, layout.fields_per_batch)
                      for s in range(layout.labels_per_field))
    for label_id in label_ids:
        batch, field, slot = parse_label_id(label_id)
        if batch != layout.batch_id or field >= layout.fields_per_batch or slot >= layout.labels_per_field:
            raise PufError(f"--labels: {label_id} is not a label of batch {layout.batch_id} "
                           f"({layout.fields_per_batch} fields of {layout.labels_per_field} labels)")
        chosen.add((field, slot))
    if not fields and not label_ids:
        chosen.update((f, s) for f in range(layout.fields_per_batch) for s in range(layout.labels_per_field))
    return sorted(chosen)


def photograph_handheld(batch_dir: Path, out: Path, per_label: int, fields: str | None = None,
                        label_ids: Sequence[str] = (), seed: int = 0, force: bool = False) -> dict:
    """`per_label` handheld photos of each chosen label into `out`; what was written and kept."""
    if per_label < 1:
        raise PufError(f"--handheld takes the photos to take of each label, at least 1, got {per_label}")
    batch = BatchDir(batch_dir)
    layout = batch.layout()
    chosen = chosen_labels(layout, fields, list(label_ids))
    if not batch.film_path.exists():
        raise PufError(f"no simulated film in {batch.film_path.parent}: run 'puf etch {batch_dir} --sim' first")
    film = EtchedFilm.load(batch.film_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for field, slot in chosen:
        label_id = layout.label_id(field, slot)
        for k in range(1, per_label + 1):
            path = out / f"{label_id}_{k}.jpg"
            if path.exists() and not force:
                kept += 1
                continue
            image, _ = capture_label(film, layout, field, slot, seed * 1_000 + k)
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise PufError(f"cannot encode the photo of {label_id} as JPEG")
            with replacing(path) as part:  # not a photo name: `puf queries` never reads it
                part.write_bytes(data.tobytes())
            written += 1
    return {"batch": layout.batch_id, "labels": len(chosen), "photos_per_label": per_label,
            "written": written, "kept": kept, "out": str(out)}
