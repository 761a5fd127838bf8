import json
import xml.etree.ElementTree as ET

import ezdxf
import pytest

from edge_app.cli import main as puf
from edge_app.layout import BatchLayout
from fabrication.laser_power import PowerCalibration
from fabrication.stage_plan import read_positions


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    batch_dir = tmp_path_factory.mktemp("design") / "B9"
    assert puf(["design", str(batch_dir), "--fields", "3x2", "--json"]) == 0
    return batch_dir, BatchLayout.load(batch_dir / "layout.json")


def test_layout_uses_every_class_evenly(designed):
    _, layout = designed
    assert layout.batch_id == "B9" and layout.label_count == 72
    counts = {name: layout.patterns.count(name) for name in set(layout.patterns)}
    assert len(counts) == 44 and max(counts.values()) - min(counts.values()) <= 1


def test_dxf_imports_cleanly_into_galvo_software(designed):
    batch_dir, layout = designed
    doc = ezdxf.readfile(batch_dir / "cad" / "batch.dxf")
    assert doc.units == ezdxf.units.MM
    assert {"BORDER_128mW", "PATTERN_128mW"} <= {layer.dxf.name for layer in doc.layers}
    borders = doc.modelspace().query('LWPOLYLINE[layer=="BORDER_128mW"]')
    assert len(borders) == 2 * layout.label_count and all(p.closed for p in borders)
    patterns = doc.modelspace().query('LWPOLYLINE[layer=="PATTERN_128mW"]')
    assert len(patterns) >= layout.label_count
    xs = [x for p in borders for x, *_ in p.get_points()]
    ys = [y for p in borders for _, y, *_ in p.get_points()]
    width_mm, height_mm = (v / 1000 for v in layout.batch_size_um)
    assert 0 < min(xs) and max(xs) < width_mm and -height_mm < min(ys) and max(ys) < 0


def test_svg_has_one_group_per_label(designed):
    batch_dir, layout = designed
    root = ET.parse(batch_dir / "cad" / "batch.svg").getroot()
    ids = [g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert ids == [layout.label_id(f, s) for f in range(6) for s in range(12)]


def test_gcode_fires_at_the_calibrated_power_inside_the_batch(designed):
    batch_dir, layout = designed
    lines = (batch_dir / "laser" / "job.gcode").read_text().splitlines()
    job = json.loads((batch_dir / "laser" / "job.json").read_text())
    s_value = PowerCalibration().s_for_mw(128.0)
    assert job["s_value"] == s_value and job["lines"] == len(lines)
    assert {"G21", "G90", "M4 S0"} <= set(lines) and lines[-2] == "M5 S0"
    assert sum(line.startswith("; label ") for line in lines) == layout.label_count
    powers = {word for line in lines if line.startswith("G1") for word in line.split() if word[0] == "S"}
    assert powers == {f"S{s_value}"}
    width_mm, height_mm = (v / 1000 for v in layout.batch_size_um)
    for line in lines:
        if line.startswith(("G0 X", "G1 X")):
            x, y = (float(w[1:]) for w in line.split()[1:3])
            assert 0 <= x <= width_mm and -height_mm <= y <= 0


def test_stage_plan_visits_every_field(designed):
    batch_dir, layout = designed
    for name in ("positions.csv", "positions.pos", "mda.json"):
        assert sorted(p.field for p in read_positions(batch_dir / "stage" / name)) == list(range(6))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pitch-um", "150"], "do not fit at a pitch"),
        (["--power-mw", "-5"], "must be zero or positive"),
        (["--power-mw", "0"], "leaves no visible mark"),
        (["--power-mw", "5"], "leaves no visible mark"),
        (["--power-mw", "480"], "would merge"),
        (["--power-mw", "900"], "more than this laser gives"),
        (["--patterns", "A,Z"], "unknown pattern class 'Z'"),
        (["--patterns", ",,"], "names no glyph"),
        (["--calibration", "BAD"], "cannot read the stage calibration"),
        (["--feed-mm-min", "0"], "--feed-mm-min, --mark-speed-mm-s and --jump-speed-mm-s must be numbers"),
        (["--feed-mm-min", "nan"], "must be numbers above 0"),
        (["--feed-mm-min", "inf"], "must be numbers above 0"),
        (["--mark-speed-mm-s", "-1"], "must be numbers above 0"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys, extra, message):
    (tmp_path / "bad.json").write_text("origin: 1, 2")
    extra = [str(tmp_path / "bad.json") if value == "BAD" else value for value in extra]
    assert puf(["design", str(tmp_path / "X1"), "--fields", "1x1", *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_negative_seed_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        puf(["design", str(tmp_path / "X1"), "--fields", "1x1", "--seed", "-1"])
    assert exit_.value.code == 2
    assert "the seed must be zero or positive" in capsys.readouterr().err


@pytest.mark.parametrize("inside", [False, True])
def test_a_file_in_place_of_the_batch_folder_is_a_message(tmp_path, capsys, inside):
    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" / "B1" if inside else tmp_path / "file"
    assert puf(["design", str(target), "--fields", "1x1"]) == 2
    assert f"cannot write the batch into {target}: Not a directory" in capsys.readouterr().err


def test_an_existing_design_is_kept_unless_forced(designed, capsys):
    batch_dir, _ = designed
    assert puf(["design", str(batch_dir), "--fields", "1x1"]) == 2
    assert "--force" in capsys.readouterr().err
