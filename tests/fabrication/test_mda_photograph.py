"""`puf photograph --mm-config` through pymmcore-plus's own MDA engine, offline.

The rig is a Micro-Manager configuration whose ``#py`` lines load our simulated stage and
camera as pure-Python devices into pymmcore-plus's UniMMCore: the engine moves that stage
and snaps that camera, which renders the etched film where the stage is. The fields come
out as OME-TIFF and are read back by tifffile's OME reader, ome-types and `puf segment`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import tifffile
from ome_types import from_tiff

from edge_app.cli import main as puf
from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.calibration import StageCalibration
from fabrication.mda_photograph import shoot_mda
from fabrication.sim.film import EtchedFilm
from fabrication.sim.laser import engrave_layout
from fabrication.sim.microscope import SimulatedMicroscope
from fabrication.sim.mm_rig import CHANNEL, OBJECTIVE, rig_config
from fabrication.stage_plan import read_positions
from tests.faults import ROOT, puf_command
from tests.photo_support import disk_full_after_one_tiff

EXPOSURE_MS = 25.0  # the batch's MDASequence says so; the simulated camera starts at 40


@pytest.fixture(scope="module")
def etched(tmp_path_factory) -> Path:
    """A batch of 2 fields etched into a simulated film, not yet photographed."""
    batch = tmp_path_factory.mktemp("factory") / "B5"
    assert puf(["design", str(batch), "--fields", "2x1", "--exposure-ms", str(EXPOSURE_MS)]) == 0
    film = EtchedFilm(5)
    engrave_layout(film, BatchLayout.load(batch / "layout.json"), 128.0)
    (batch / "sim").mkdir()
    film.save(batch / "sim" / "film.npz")
    return batch


@pytest.fixture()
def batch(etched, tmp_path) -> Path:
    copy = tmp_path / "B5"
    shutil.copytree(etched, copy)
    return copy


def rig(batch: Path, *extra: str) -> Path:
    """The simulated rig's configuration, with extra lines (device faults) appended."""
    path = batch.parent / "rig.cfg"
    path.write_text(rig_config(batch) + "\n".join(extra) + "\n")
    return path


def photograph(batch: Path, config: Path) -> int:
    return puf(["photograph", str(batch), "--mm-config", str(config)])


def ome_xml(path: Path) -> ElementTree.Element:
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        return ElementTree.fromstring(tif.ome_metadata)


def test_the_engine_photographs_every_field_as_ome_tiff(batch):
    assert photograph(batch, rig(batch)) == 0
    plan = read_positions(batch / "stage" / "mda.json")
    manifest = json.loads((batch / "fields" / "manifest.json").read_text())
    assert manifest["backend"] == "pymmcore-plus MDA engine"
    assert [e["field"] for e in manifest["fields"]] == [0, 1]
    # each frame is what the simulated microscope sees at that field's stage position
    expected = SimulatedMicroscope(
        EtchedFilm.load(batch / "sim" / "film.npz"), BatchLayout.load(batch / "layout.json"),
        StageCalibration.load(batch / "stage" / "calibration.json"), seed=0)
    for position in plan:
        path = batch / "fields" / f"field_{position.field:04d}.tif"
        expected.move_to(position.x_um, position.y_um)
        np.testing.assert_array_equal(tifffile.imread(path), expected.snap().image[..., ::-1])

        # tifffile's OME reader: the OME-XML of the file
        root = ome_xml(path)
        ns = {"ome": root.tag[1:].split("}")[0]}
        pixels = root.find("ome:Image/ome:Pixels", ns)
        plane = pixels.find("ome:Plane", ns)
        assert float(pixels.get("PhysicalSizeX")) == 0.6 and pixels.get("PhysicalSizeXUnit") == "µm"
        assert (float(plane.get("PositionX")), float(plane.get("PositionY"))) == (position.x_um, position.y_um)
        assert float(plane.get("ExposureTime")) == EXPOSURE_MS  # the sequence's, set by the engine
        pairs = {m.get("K"): m.text for m in root.iter(f"{{{ns['ome']}}}M")}
        assert pairs == {"puf.batch_id": "B5", "puf.field": str(position.field),
                         "puf.position_label": position.label}

        # when it was taken, the objective, the channel and its wavelength, and a scale for plain TIFF readers
        image_xml = root.find("ome:Image", ns)
        assert datetime.fromisoformat(image_xml.find("ome:AcquisitionDate", ns).text).tzinfo is not None
        objective = root.find("ome:Instrument/ome:Objective", ns)
        assert objective.get("Model") == OBJECTIVE
        assert image_xml.find("ome:ObjectiveSettings", ns).get("ID") == objective.get("ID")
        channel = image_xml.find("ome:Pixels/ome:Channel", ns)
        assert (channel.get("Name"), channel.get("EmissionWavelength"), channel.get("EmissionWavelengthUnit")) \
            == (CHANNEL, "513.0", "nm")
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            assert tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            assert tags["XResolution"].value[0] / tags["XResolution"].value[1] == pytest.approx(1e4 / 0.6)

        # ome-types reads the same
        ome = from_tiff(path)
        image = ome.images[0]
        assert ome.instruments[0].objectives[0].model == OBJECTIVE
        assert image.pixels.channels[0].emission_wavelength == 513.0
        assert image.name == position.label
        assert image.pixels.physical_size_x == 0.6 and image.pixels.size_x == 1920
        assert image.pixels.planes[0].position_x == position.x_um
        assert ome.structured_annotations.map_annotations[0].value["puf.field"] == str(position.field)


def test_puf_segment_reads_the_ome_fields_with_and_without_the_manifest(batch, capsys):
    assert photograph(batch, rig(batch)) == 0
    (batch / "fields" / "manifest.json").unlink()  # only the OME metadata says which field is which
    for name in ("field_0000.tif", "field_0001.tif"):
        (batch / "fields" / name).rename(batch / "fields" / f"scan_{1 - int(name[9])}.tif")
    capsys.readouterr()
    assert puf(["segment", str(batch), "--json", "--registry", str(batch / "r.sqlite")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["field_order"] == "OME metadata"
    assert summary["labels"] == {"expected": 24, "found": 24}
    assert summary["pixel_size_um"] == {"median": 0.6, "from": "the OME metadata"}


def test_a_rerun_shoots_only_the_missing_fields(batch, capsys):
    config = rig(batch)
    assert photograph(batch, config) == 0
    first = tifffile.imread(batch / "fields" / "field_0001.tif")
    kept = (batch / "fields" / "field_0000.tif").stat().st_mtime_ns
    (batch / "fields" / "field_0001.tif").unlink()
    capsys.readouterr()
    assert photograph(batch, config) == 0
    assert "1 fields photographed, 1 already there" in capsys.readouterr().out
    assert (batch / "fields" / "field_0000.tif").stat().st_mtime_ns == kept
    np.testing.assert_array_equal(tifffile.imread(batch / "fields" / "field_0001.tif"), first)
    manifest = json.loads((batch / "fields" / "manifest.json").read_text())
    assert [(e["field"], e["exposure_ms"]) for e in manifest["fields"]] == [(0, EXPOSURE_MS), (1, EXPOSURE_MS)]


def test_a_camera_failure_stops_at_its_field_and_the_rerun_finishes(batch, capsys):
    assert photograph(batch, rig(batch, "#py Property,Camera,FailAtSnap,2")) == 2
    error = capsys.readouterr().err
    assert "field 1: the camera 'Camera' took no picture" in error and "FailAtSnap" in error
    assert sorted(p.name for p in (batch / "fields").iterdir()) == ["field_0000.tif"]
    assert photograph(batch, rig(batch)) == 0
    assert sorted(p.name for p in (batch / "fields").glob("*.tif")) == ["field_0000.tif", "field_0001.tif"]


def test_a_failed_run_exits_with_its_error_not_an_abort(batch):
    """A pymmcore core still alive at interpreter exit aborts the process ("FATAL: exception
    not rethrown", status 134): after a device failure the command must still end cleanly."""
    command = puf_command("photograph", str(batch), "--mm-config",
                          str(rig(batch, "#py Property,Camera,FailAtSnap,2")))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "took no picture" in done.stderr and "FATAL" not in done.stderr


def test_a_stage_that_refuses_a_move_writes_no_field_from_the_wrong_place(batch, capsys):
    # field 1 lies at x = 1500 µm, beyond this stage's travel: the stock engine would log
    # that and photograph wherever the stage stood
    assert photograph(batch, rig(batch, "#py Property,Stage,TravelUm,1000")) == 2
    error = capsys.readouterr().err
    assert "field 1: the stage 'Stage' is at (500.0, 375.0) µm, not at (1500.0, 375.0) µm" in error
    assert "beyond the stage's travel" in error
    assert sorted(p.name for p in (batch / "fields").iterdir()) == ["field_0000.tif"]


def test_a_full_disk_stops_the_run_and_keeps_the_fields_written(batch, monkeypatch, capsys):
    calls = disk_full_after_one_tiff(monkeypatch)
    assert photograph(batch, rig(batch)) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in (batch / "fields").iterdir()) == ["field_0000.tif"]
    assert len(calls) == 2  # the engine was cancelled: nothing more was shot


def test_an_interrupt_cancels_the_engine_after_the_field_in_hand(batch):
    positions = read_positions(batch / "stage" / "mda.json")
    (batch / "fields").mkdir()
    shot = []

    def progress(entry: dict) -> dict:
        shot.append(entry["field"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shoot_mda(batch, "B5", positions, rig(batch), batch / "stage" / "mda.json", 0.6, progress)
    assert shot == [0]
    assert sorted(p.name for p in (batch / "fields").iterdir()) == ["field_0000.tif"]


# ---- configurations and sequences that cannot run ----------------------------------------

def test_a_device_class_that_does_not_exist_is_a_clear_error(batch, capsys):
    config = batch.parent / "rig.cfg"
    config.write_text("#py pyDevice,Camera,fabrication.sim.mm_rig,NoSuchCamera\n")
    assert photograph(batch, config) == 2
    error = capsys.readouterr().err
    assert "could not load" in error and "NoSuchCamera" in error and "Traceback" not in error


def test_a_device_that_fails_to_initialise_is_named(batch, capsys):
    (batch / "sim" / "film.npz").unlink()
    assert photograph(batch, rig(batch)) == 2
    error = capsys.readouterr().err
    assert "could not initialise the device(s) Stage, Camera" in error or \
        "could not initialise the device(s) Camera, Stage" in error
    assert "puf etch" in error  # the device's own words: what to run first


def test_a_sequence_of_more_than_one_image_per_position_is_refused(batch, capsys):
    sequence = json.loads((batch / "stage" / "mda.json").read_text())
    sequence["z_plan"] = {"range": 4.0, "step": 1.0}
    (batch / "z.json").write_text(json.dumps(sequence))
    assert puf(["photograph", str(batch), "--mm-config", str(rig(batch)),
                "--positions", str(batch / "z.json")]) == 2
    assert "each position must give one image" in capsys.readouterr().err
    assert not list((batch / "fields").glob("*.tif"))


def test_ome_metadata_it_cannot_understand_is_named(tmp_path):
    from fabrication.ome_field import read_field

    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), ome=True,
                     metadata={"PhysicalSizeX": 2.0, "PhysicalSizeXUnit": "pc"})  # parsecs
    with pytest.raises(PufError, match="odd.tif: its OME metadata cannot be read.*'pc'"):
        read_field(path)
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), ome=True,
                     metadata={"PhysicalSizeX": 650.0, "PhysicalSizeXUnit": "nm",
                               "Plane": {"PositionX": [1.5], "PositionXUnit": ["mm"],
                                         "PositionY": [2.0], "PositionYUnit": ["mm"]}})
    assert read_field(path) == {"pixel_size_um": 0.65, "stage_um": [1500.0, 2000.0]}
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), ome=True,
                     metadata={"MapAnnotation": {"puf.field": "seven"}})
    with pytest.raises(PufError, match="puf.field is 'seven'"):
        read_field(path)


def test_etch_sim_writes_the_rig_that_photographs_its_film(tmp_path, capsys):
    batch = tmp_path / "B6"
    assert puf(["design", str(batch), "--fields", "1x1", "--labels", "2x1"]) == 0
    capsys.readouterr()
    assert puf(["etch", str(batch), "--sim", "--json"]) == 0
    config = batch / "sim" / "rig.cfg"
    assert json.loads(capsys.readouterr().out)["rig_config"] == str(config)
    assert config.read_text() == rig_config(batch)
    assert photograph(batch, config) == 0
    assert ome_xml(batch / "fields" / "field_0000.tif") is not None
