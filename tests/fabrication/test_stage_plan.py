import json
import math

import numpy as np
import pytest
import useq

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.calibration import StageCalibration
from fabrication.stage_plan import (
    CSV_HEADER,
    StagePosition,
    plan_positions,
    read_positions,
    write_csv,
    write_mda_sequence,
    write_micromanager_pos,
)

CALIBRATION = StageCalibration(origin_um=(12345.5, -6789.25), rotation_deg=1.5)


def small_layout(field_cols: int = 5, field_rows: int = 4) -> BatchLayout:
    count = 12 * field_cols * field_rows
    return BatchLayout("B0001", ("1",) * count, field_cols=field_cols, field_rows=field_rows)


def rotation(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@pytest.fixture
def plan() -> list[StagePosition]:
    return plan_positions(small_layout(), CALIBRATION)


# ---- planning ----------------------------------------------------------------------------

def test_positions_are_field_centres_through_the_calibration(plan):
    layout = small_layout()
    for p in plan:
        expected = np.array(CALIBRATION.origin_um) + rotation(1.5) @ layout.field_center_um(p.field)
        assert (p.x_um, p.y_um) == pytest.approx(tuple(expected), abs=1e-9)
        assert CALIBRATION.stage_to_design(p.x_um, p.y_um) == pytest.approx(
            layout.field_center_um(p.field), abs=1e-9)
        assert (p.grid_row, p.grid_col) == divmod(p.field, layout.field_cols)


def test_serpentine_visits_every_field_once_stepping_only_to_neighbours(plan):
    layout = small_layout()
    assert sorted(p.field for p in plan) == list(range(layout.fields_per_batch))
    width, height = layout.field_size_um
    for a, b in zip(plan, plan[1:], strict=False):
        step = math.dist((a.x_um, a.y_um), (b.x_um, b.y_um))
        assert step == pytest.approx(width) or step == pytest.approx(height)
    rows = [[p.grid_col for p in plan if p.grid_row == r] for r in range(layout.field_rows)]
    assert rows[0] == sorted(rows[0]) and rows[1] == sorted(rows[1], reverse=True)


def test_raster_order_without_serpentine_travels_further(plan):
    raster = plan_positions(small_layout(), CALIBRATION, serpentine=False)
    assert [p.field for p in raster] == list(range(len(raster)))

    def travel(positions):
        return sum(math.dist((a.x_um, a.y_um), (b.x_um, b.y_um))
                   for a, b in zip(positions, positions[1:], strict=False))

    assert travel(plan) < travel(raster)


def test_labels_are_unique_and_name_batch_and_field(plan):
    assert len({p.label for p in plan}) == len(plan)
    assert {p.label for p in plan if p.field == 7} == {"B0001-F0007"}


def test_positions_reject_non_finite_coordinates_and_duplicate_labels(tmp_path, plan):
    with pytest.raises(PufError, match="x_um"):
        StagePosition(0, "B0001-F0000", math.nan, 0.0, 0, 0)
    twin = StagePosition(99, plan[0].label, 0.0, 0.0, 0, 0)
    with pytest.raises(PufError, match="twice"):
        write_csv(tmp_path / "plan.csv", [*plan, twin])


# ---- calibration -------------------------------------------------------------------------

def test_reference_point_fit_recovers_a_known_transform_from_three_noisy_points():
    truth = StageCalibration(origin_um=(20500.0, 13250.0), rotation_deg=1.5, scale=1.0004)
    layout = small_layout()
    width, height = layout.batch_size_um
    design = [(0.0, 0.0), (width, 0.0), (0.0, height)]
    noise = np.random.default_rng(7).normal(0.0, 0.5, size=(3, 2))  # 0.5 µm measuring error
    stage = [tuple(np.add(truth.design_to_stage(*d), n))
             for d, n in zip(design, noise, strict=True)]

    fit = StageCalibration.from_reference_points(design, stage)

    assert fit.rotation_deg == pytest.approx(1.5, abs=0.02)
    assert fit.scale == pytest.approx(1.0004, abs=3e-4)
    for true_p, fit_p in zip(plan_positions(layout, truth), plan_positions(layout, fit),
                             strict=True):
        assert math.dist((true_p.x_um, true_p.y_um), (fit_p.x_um, fit_p.y_um)) < 1.5


def test_calibration_loads_reference_points_from_a_file(tmp_path):
    truth = StageCalibration(origin_um=(500.0, -250.0), rotation_deg=-0.75)
    design = [(0.0, 0.0), (5000.0, 0.0), (5000.0, 3000.0)]
    points = [{"design_um": list(d), "stage_um": list(truth.design_to_stage(*d))} for d in design]
    path = tmp_path / "stage.json"
    path.write_text(json.dumps({"reference_points": points}))

    loaded = StageCalibration.load(path)

    assert loaded.origin_um == pytest.approx(truth.origin_um, abs=1e-6)
    assert loaded.rotation_deg == pytest.approx(truth.rotation_deg, abs=1e-9)


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    '{"rotation_deg": 1.5}',
    '{"origin_um": [1.0]}',
    '{"origin_um": ["left", 2]}',
    '{"reference_points": [{"design_um": [0, 0]}]}',
    '{"reference_points": [{"design_um": [0, 0], "stage_um": [1, 1]}]}',
    '{"origin_um": [0, 0], "scale": 9}',
])
def test_calibration_load_rejects_a_bad_file_naming_it(tmp_path, content):
    path = tmp_path / "stage.json"
    path.write_text(content)
    with pytest.raises(PufError, match="stage.json"):
        StageCalibration.load(path)


def test_calibration_load_of_a_missing_file(tmp_path):
    with pytest.raises(PufError, match="no stage calibration"):
        StageCalibration.load(tmp_path / "absent.json")


# ---- Micro-Manager position list ---------------------------------------------------------

def test_micromanager_pos_has_the_mm2_structure(tmp_path, plan):
    path = tmp_path / "B0001.pos"
    write_micromanager_pos(path, plan, xy_stage="XY")
    data = json.loads(path.read_text())

    assert data["format"] == "Micro-Manager Property Map"
    assert (data["major_version"], data["minor_version"], data["encoding"]) == (2, 0, "UTF-8")
    assert data["map"]["StagePositions"]["type"] == "PROPERTY_MAP"
    entries = data["map"]["StagePositions"]["array"]
    assert len(entries) == len(plan)
    for entry, p in zip(entries, plan, strict=True):
        assert list(entry) == ["DefaultXYStage", "DefaultZStage", "DevicePositions", "GridCol",
                               "GridRow", "Label", "Properties"]
        assert entry["DefaultXYStage"] == {"type": "STRING", "scalar": "XY"}
        assert entry["Label"] == {"type": "STRING", "scalar": p.label}
        assert entry["GridRow"] == {"type": "INTEGER", "scalar": p.grid_row}
        assert entry["GridCol"] == {"type": "INTEGER", "scalar": p.grid_col}
        assert entry["DevicePositions"] == {"type": "PROPERTY_MAP", "array": [{
            "Device": {"type": "STRING", "scalar": "XY"},
            "Position_um": {"type": "DOUBLE", "array": [p.x_um, p.y_um]},
        }]}
        assert entry["Properties"] == {
            "type": "PROPERTY_MAP", "scalar": {"Field": {"type": "STRING", "scalar": str(p.field)}}}


def test_micromanager_pos_loads_back_identically(tmp_path, plan):
    path = tmp_path / "B0001.pos"
    write_micromanager_pos(path, plan)
    assert read_positions(path) == plan


def test_a_list_resaved_by_micromanager_with_focus_and_edits_still_loads(tmp_path, plan):
    """Micro-Manager keeps the Field property; users add a focus position and nudge XY."""
    path = tmp_path / "B0001.pos"
    write_micromanager_pos(path, plan)
    data = json.loads(path.read_text())
    first = data["map"]["StagePositions"]["array"][0]
    first["DefaultZStage"]["scalar"] = "Z"
    first["DevicePositions"]["array"].insert(0, {
        "Device": {"type": "STRING", "scalar": "Z"},
        "Position_um": {"type": "DOUBLE", "array": [1500.0]},
    })
    first["DevicePositions"]["array"][1]["Position_um"]["array"][0] += 3.0
    path.write_text(json.dumps(data))

    loaded = read_positions(path)

    assert loaded[0].x_um == plan[0].x_um + 3.0
    assert loaded[1:] == plan[1:]


# ---- CSV ---------------------------------------------------------------------------------

def test_csv_round_trip_is_exact(tmp_path, plan):
    path = tmp_path / "B0001.csv"
    write_csv(path, plan)
    assert path.read_text().splitlines()[0] == ",".join(CSV_HEADER)
    assert read_positions(path) == plan


def test_csv_rows_are_read_in_their_order_column(tmp_path, plan):
    path = tmp_path / "B0001.csv"
    write_csv(path, plan)
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *reversed(rows)]))
    assert read_positions(path) == plan


# ---- useq MDASequence --------------------------------------------------------------------

def test_mda_sequence_loads_with_useq_and_holds_the_same_positions(tmp_path, plan):
    path = tmp_path / "B0001.useq.json"
    write_mda_sequence(path, plan, exposure_ms=40.0)

    sequence = useq.MDASequence.model_validate_json(path.read_text())

    assert [(q.name, q.x, q.y) for q in sequence.stage_positions] == \
        [(p.label, p.x_um, p.y_um) for p in plan]
    assert sequence.setup.exposure == 40.0
    events = list(sequence)
    assert [(e.pos_name, e.x_pos, e.y_pos) for e in events] == [(p.label, p.x_um, p.y_um)
                                                                for p in plan]
    assert read_positions(path) == plan


def test_mda_sequence_with_a_channel_carries_the_exposure_in_it(tmp_path, plan):
    path = tmp_path / "B0001.useq.json"
    write_mda_sequence(path, plan, exposure_ms=25.0, channel="GFP")

    sequence = useq.MDASequence.model_validate_json(path.read_text())

    assert [(c.group, c.config, c.exposure) for c in sequence.channels] == \
        [("Channel", "GFP", 25.0)]
    assert {e.exposure for e in sequence} == {25.0}
    assert read_positions(path) == plan


def test_mda_sequence_refuses_a_meaningless_exposure(tmp_path, plan):
    with pytest.raises(PufError, match="exposure"):
        write_mda_sequence(tmp_path / "x.json", plan, exposure_ms=0.0)


# ---- bad files ---------------------------------------------------------------------------

def _pos_with(plan, edit) -> str:
    from fabrication.stage_plan import micromanager_position_list

    data = micromanager_position_list(plan[:3])
    edit(data)
    return json.dumps(data)


def _entry(data, index=0):
    return data["map"]["StagePositions"]["array"][index]


CSV_HEAD = ",".join(CSV_HEADER)


@pytest.mark.parametrize(("content", "problem"), [
    ("", "not a stage-position CSV"),
    (CSV_HEAD, "no positions"),
    ("x,y\n1,2\n", "header"),
    (f"{CSV_HEAD}\n0,0,A,1.0,2.0,0\n", "line 2 has 6 values"),
    (f"{CSV_HEAD}\n0,0,A,one,2.0,0,0\n", "line 2"),
    (f"{CSV_HEAD}\n0,0,A,nan,2.0,0,0\n", "finite"),
    (f"{CSV_HEAD}\n0,0,A,1.0,2.0,0,0\n1,1,A,1.0,2.0,0,1\n", "label 'A' twice"),
    (f"{CSV_HEAD}\n0,0,A,1.0,2.0,0,0\n0,1,B,1.0,2.0,0,1\n", "order column"),
    (f"{CSV_HEAD}\n0,-1,A,1.0,2.0,0,0\n", "field"),
    ("{", "not valid JSON"),
    ('{"stage_positions": "everywhere"}', "useq MDASequence"),
    ('{"stage_positions": [{"x": 1, "y": 2, "name": "A"}]}', "field of every position"),
    ("__POS_VERSION__", "version 1"),
    ("__POS_NO_FIELD__", "'Field'"),
    ("__POS_ONE_AXIS__", "x, y position"),
    ("__POS_NO_MAP__", "StagePositions"),
])
def test_malformed_files_raise_puf_error_naming_file_and_problem(tmp_path, plan, content,
                                                                 problem):
    edits = {
        "__POS_VERSION__": lambda d: d.update(major_version=1),
        "__POS_NO_FIELD__": lambda d: _entry(d, 1)["Properties"].update(scalar={}),
        "__POS_ONE_AXIS__": lambda d: _entry(d)["DevicePositions"]["array"][0][
            "Position_um"].update(array=[1.0]),
        "__POS_NO_MAP__": lambda d: d.update(map={}),
    }
    if content in edits:
        content = _pos_with(plan, edits[content])
    path = tmp_path / "plan.file"
    path.write_text(content)
    with pytest.raises(PufError) as error:
        read_positions(path)
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_unreadable_and_missing_files(tmp_path):
    binary = tmp_path / "plan.pos"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PufError, match="plan.pos"):
        read_positions(binary)
    with pytest.raises(PufError, match="no stage positions"):
        read_positions(tmp_path / "absent.csv")


def test_a_write_that_fails_says_which_file(tmp_path, plan):
    target = tmp_path / "no-such-folder" / "plan.csv"
    with pytest.raises(PufError, match="plan.csv"):
        write_csv(target, plan)


def test_reference_points_on_a_stage_with_inverted_y_fit_mirrored():
    design = [(0.0, 0.0), (20000.0, 0.0), (0.0, 7500.0), (20000.0, 7500.0)]
    truth = StageCalibration((1500.0, 9000.0), 0.8, 1.0, mirror_y=True)
    stage = [truth.design_to_stage(x, y) for x, y in design]
    fitted = StageCalibration.from_reference_points(design, stage)
    assert fitted.mirror_y
    for x, y in [(123.0, 4567.0), (19000.0, 100.0)]:
        assert fitted.design_to_stage(x, y) == pytest.approx(truth.design_to_stage(x, y), abs=1e-6)


def test_reference_points_that_fit_no_placement_are_refused():
    design = [(0.0, 0.0), (20000.0, 0.0), (0.0, 7500.0)]
    stage = [(0.0, 0.0), (20000.0, 0.0), (3000.0, 3000.0)]
    with pytest.raises(PufError, match="do not fit one placement"):
        StageCalibration.from_reference_points(design, stage)
