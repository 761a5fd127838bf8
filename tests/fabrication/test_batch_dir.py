"""The batch folder's formats have one owner (fabrication.batch_dir, fabrication.stage_calibration):
what the factory writes, segmentation reads back, and a file that cannot be used is a clear
error naming it, never a silent default."""

from __future__ import annotations

import json

import pytest

from edge_app.cli import main as puf
from edge_app.errors import PufError
from fabrication.batch_dir import BatchDir, FieldsManifest
from fabrication.calibration import StageCalibration as FittedCalibration
from fabrication.stage_calibration import StageCalibration
from tests.segment_support import make_layout

LAYOUT = make_layout()


def listed_batch(root) -> BatchDir:
    """A batch with its layout and a manifest of two fields (their images never read)."""
    batch = BatchDir(root / LAYOUT.batch_id)
    batch.fields_dir.mkdir(parents=True)
    LAYOUT.save(batch.layout_path)
    batch.write_fields_manifest(FieldsManifest(LAYOUT.batch_id, "sim", 0.6, [
        {"field": field, "file": batch.field_path(field).name, "stage_um": [10.0 * field, 5.0]}
        for field in (1, 0)]))
    return batch


def test_the_fields_manifest_reads_back_what_was_written(tmp_path) -> None:
    batch = listed_batch(tmp_path)
    manifest = batch.fields_manifest()
    assert manifest is not None and manifest.batch_id == LAYOUT.batch_id and manifest.backend == "sim"
    images = manifest.images(batch.fields_dir, pixel_um=None)
    assert [(f.field, f.path, f.pixel_size_um, f.stage_um) for f in images] == [
        (0, batch.field_path(0), 0.6, (0.0, 5.0)), (1, batch.field_path(1), 0.6, (10.0, 5.0))]
    assert [f.pixel_size_um for f in manifest.images(batch.fields_dir, pixel_um=0.5)] == [0.5, 0.5]
    assert BatchDir(tmp_path / "plain").fields_manifest() is None


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    '{"fields": 3}',
    '{"fields": [{"field": 0}]}',
    '{"fields": [{"field": "first", "file": "field_0000.tif"}]}',
    '{"fields": [{"field": 0, "file": "../../layout.json"}]}',
    '{"fields": [{"field": 0, "file": "/etc/passwd"}]}',
    '{"fields": [{"field": 0, "file": "field_0000.tif", "stage_um": [1]}]}',
])
def test_a_bad_fields_manifest_is_refused_naming_it(tmp_path, content) -> None:
    batch = listed_batch(tmp_path)
    batch.manifest_path.write_text(content)
    with pytest.raises(PufError, match="manifest.json"):
        batch.fields_manifest()


def test_the_calibration_file_round_trips_and_inverts(tmp_path) -> None:
    calibration = StageCalibration((1500.0, -250.0), 1.25, 1.0004, mirror_y=True)
    batch = BatchDir(tmp_path)
    assert batch.stage_calibration() is None  # none: segmentation goes by the plan
    batch.stage_dir.mkdir()
    calibration.save(batch.calibration_path)
    loaded = batch.stage_calibration()
    assert loaded == calibration
    x, y = loaded.stage_to_design(*loaded.design_to_stage(1234.5, -678.0))
    assert x == pytest.approx(1234.5) and y == pytest.approx(-678.0)


def test_reference_points_are_fitted_by_the_factory_only(tmp_path) -> None:
    truth = FittedCalibration((500.0, 800.0), 0.5)
    design = [(0.0, 0.0), (9000.0, 0.0), (0.0, 4000.0)]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"reference_points": [
        {"design_um": list(d), "stage_um": list(truth.design_to_stage(*d))} for d in design]}))
    fitted = FittedCalibration.load(path)
    assert fitted.rotation_deg == pytest.approx(0.5) and fitted.origin_um == pytest.approx((500.0, 800.0))
    with pytest.raises(PufError, match="reference points, not a fitted calibration"):
        StageCalibration.load(path)


@pytest.mark.parametrize("content, why", [
    ("{not json", "cannot read the stage calibration"),
    ('{"rotation_deg": 90}', "cannot read the stage calibration"),  # was: 90 deg and no stage positions
    ('{"origin_um": [0, 0], "mirror_y": "false"}', "mirror_y must be true or false"),
    ('{"origin_um": [0, 0], "scale": 0}', "implausible"),
    ('{"origin_um": [0, "NaN"]}', "not a number"),
    ('{"reference_points": [{"design_um": [0, 0], "stage_um": [1, 1]}]}', "not a fitted calibration"),
])
def test_segment_refuses_a_corrupt_calibration_naming_it(tmp_path, capsys, content, why) -> None:
    """A corrupt stage calibration was read as rotation 0 and no stage positions: now `puf
    segment` stops before any field is cut, with an error that names the file."""
    batch = listed_batch(tmp_path)
    batch.stage_dir.mkdir()
    batch.calibration_path.write_text(content)
    assert puf(["segment", str(batch.root), "--registry", str(tmp_path / "r.sqlite")]) != 0
    error = capsys.readouterr().err
    assert "calibration.json" in error and why in error and "Traceback" not in error
    assert not (tmp_path / "r.sqlite").exists() and not batch.crops_dir.exists()
