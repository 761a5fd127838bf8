"""A batch folder: every path in it and every file format it holds, in one place.

    BATCH_DIR/
      layout.json                   the batch layout (edge_app.layout.BatchLayout)
      pattern_templates.npz         the batch's glyphs (edge_app.orientation.PatternTemplates)
      cad/batch.dxf, cad/batch.svg  the label array
      laser/job.gcode, job.json     the laser job and its settings
      laser/power_calibration.json  the S -> mW table the job was written with
      stage/calibration.json        where the design sits on the stage (fabrication.stage_calibration)
      stage/positions.pos|.csv      the field positions; stage/mda.json the same as an MDASequence
      sim/film.npz                  the simulated film, after `puf etch --sim`
      fields/field_0007.tif         one image per field (OME-TIFF: fabrication.ome_field)
      fields/field_0007.truth.json  simulator only: where each label really is
      fields/manifest.json          the fields photographed (FieldsManifest, below)
      crops/<label id>.png          one crop per label found by `puf segment`
      overlays/field_0007.jpg       `puf segment --overlay`: what was found, for a person
    BATCH_DIR/../registry.sqlite    the factory's registry, one beside its batches

The factory writes these (`fabrication`), segmentation and the device side read them
(`edge_app`, which may not import `fabrication`): so the folder is described here, and
every step asks `BatchDir` for a path instead of spelling it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.errors import PufError, cannot_write
from edge_app.json_files import read_json, write_json
from edge_app.layout import BatchLayout
from fabrication.stage_calibration import StageCalibration

if TYPE_CHECKING:
    from edge_app.layout import BatchLayout
    from fabrication.stage_calibration import StageCalibration

TEMPLATES_FILE = "pattern_templates.npz"
FIELD_NAME = "field_{:04d}.tif"


@dataclass(frozen=True)
class FieldImage:
    """One field's image, with what the batch says of it."""

    field: int
    path: Path
    pixel_size_um: float | None
    stage_um: tuple[float, float] | None = None  # where the stage reported it was
    pixel_size_from: str | None = None  # where `pixel_size_um` comes from, for people (None: not known)


@dataclass(frozen=True)
class FieldsManifest:
    """fields/manifest.json: the batch's fields as `puf photograph` took them. Each entry
    is the field's metadata (batch_id, field, position_label, stage_um, exposure_ms,
    pixel_size_um) and its file name in fields/."""

    batch_id: str
    backend: str
    pixel_size_um: float | None
    fields: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "backend": self.backend,
                "pixel_size_um": self.pixel_size_um, "fields": self.fields}

    def images(self, fields_dir: Path, pixel_um: float | None = None) -> list[FieldImage]:
        """The fields in field order; a pixel size given (`pixel_um`) wins over the entry's,
        which wins over the manifest's."""

        def pixel_size(entry: dict) -> float | None:
            value = pixel_um or entry.get("pixel_size_um") or self.pixel_size_um
            return None if value is None else float(value)

        def pixel_size_from(entry: dict) -> str | None:
            if pixel_um:
                return "--pixel-um"
            return "the manifest" if entry.get("pixel_size_um") or self.pixel_size_um else None

        def stage(entry: dict) -> tuple[float, float] | None:
            position = entry.get("stage_um")
            if not position or position[0] is None:
                return None
            x, y = position
            return float(x), float(y)

        def file(entry: dict) -> Path:
            name = str(entry["file"])
            if not name or Path(name).name != name:  # a manifest names files in fields/, nowhere else
                raise ValueError(f"field {entry.get('field')}: {name!r} is not a file name in {fields_dir}")
            return fields_dir / name

        return sorted((FieldImage(int(e["field"]), file(e), pixel_size(e), stage(e), pixel_size_from(e))
                       for e in self.fields), key=lambda f: f.field)


@dataclass(frozen=True)
class BatchDir:
    """A batch folder's paths and files; `root` need not exist yet (`puf design` makes it)."""

    root: Path

    # ---- design: layout, glyphs, CAD, laser, stage --------------------------------------
    @property
    def layout_path(self) -> Path:
        return self.root / "layout.json"

    @property
    def templates_path(self) -> Path:
        return self.root / TEMPLATES_FILE

    @property
    def cad_dir(self) -> Path:
        return self.root / "cad"

    @property
    def dxf_path(self) -> Path:
        return self.cad_dir / "batch.dxf"

    @property
    def svg_path(self) -> Path:
        return self.cad_dir / "batch.svg"

    @property
    def laser_dir(self) -> Path:
        return self.root / "laser"

    @property
    def laser_job_path(self) -> Path:
        return self.laser_dir / "job.gcode"

    @property
    def laser_settings_path(self) -> Path:
        return self.laser_dir / "job.json"

    @property
    def power_calibration_path(self) -> Path:
        return self.laser_dir / "power_calibration.json"

    @property
    def stage_dir(self) -> Path:
        return self.root / "stage"

    @property
    def calibration_path(self) -> Path:
        return self.stage_dir / "calibration.json"

    @property
    def positions_csv_path(self) -> Path:
        return self.stage_dir / "positions.csv"

    @property
    def positions_pos_path(self) -> Path:
        return self.stage_dir / "positions.pos"

    @property
    def mda_path(self) -> Path:
        return self.stage_dir / "mda.json"

    @property
    def film_path(self) -> Path:
        return self.root / "sim" / "film.npz"

    @property
    def rig_config_path(self) -> Path:
        """The simulated microscope over the etched film, as a Micro-Manager configuration."""
        return self.root / "sim" / "rig.cfg"

    # ---- photography: fields and their manifest -----------------------------------------
    @property
    def fields_dir(self) -> Path:
        return self.root / "fields"

    @property
    def manifest_path(self) -> Path:
        return self.fields_dir / "manifest.json"

    def field_path(self, field: int) -> Path:
        return self.fields_dir / FIELD_NAME.format(field)

    def truth_path(self, field: int) -> Path:
        return self.field_path(field).with_suffix(".truth.json")

    # ---- segmentation: crops, overlays, the registry -------------------------------------
    @property
    def crops_dir(self) -> Path:
        return self.root / "crops"

    @staticmethod
    def crop_name(label_id: str) -> str:
        """A crop's path relative to the batch folder, as the registry records it."""
        return f"crops/{label_id}.png"

    def crop_path(self, label_id: str) -> Path:
        return self.root / self.crop_name(label_id)

    @property
    def overlays_dir(self) -> Path:
        return self.root / "overlays"

    def overlay_path(self, field: int) -> Path:
        return self.overlays_dir / f"field_{field:04d}.jpg"

    @property
    def segment_lock_path(self) -> Path:
        """One `puf segment` at a time on a batch (edge_app.folder_lock)."""
        return self.root / ".puf-segment.lock"

    @property
    def default_registry(self) -> Path:
        """The factory's registry: one beside its batches."""
        return self.root.resolve().parent / "registry.sqlite"

    # ---- the files, read and written -----------------------------------------------------
    def make_dirs(self) -> None:
        """The folders `puf design` writes into."""
        try:
            for folder in (self.cad_dir, self.laser_dir, self.stage_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PufError(f"cannot write the batch into {self.root}: {error.strerror or error}") from None

    def has_design(self) -> bool:
        return self.layout_path.exists()

    def layout(self) -> BatchLayout:
        return BatchLayout.load(self.layout_path)

    def stage_calibration(self) -> StageCalibration | None:
        """The batch's stage calibration, None when it has none; a file that is there but
        cannot be used is a PufError, never a silent default."""
        path = self.calibration_path
        return StageCalibration.load(path) if path.exists() else None

    def fields_manifest(self) -> FieldsManifest | None:
        """fields/manifest.json, None when the batch has none (not photographed yet, or a
        plain folder of images)."""
        path = self.manifest_path
        if not path.exists():
            return None
        data = read_json(path, "manifest")
        try:
            if not isinstance(data, dict):
                raise ValueError(f"expected an object, got {type(data).__name__}")
            manifest = FieldsManifest(str(data.get("batch_id", "")), str(data.get("backend", "")),
                                      data.get("pixel_size_um"), list(data["fields"]))
            manifest.images(self.fields_dir)  # every entry has a field number and a file
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PufError(f"cannot read the manifest {path}: {error!r}") from None
        return manifest

    def write_fields_manifest(self, manifest: FieldsManifest) -> None:
        """Write the manifest atomically: the one there stays whole until the new one is."""
        try:
            write_json(self.manifest_path, manifest.to_dict(), indent=1)
        except OSError as error:
            raise cannot_write(self.manifest_path, error, "every field photographed is kept") from None
