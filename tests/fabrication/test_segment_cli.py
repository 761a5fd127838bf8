"""`puf segment` on a photographed batch: crops named by label id, a registry that says
what became of every label, bad fields listed, re-runs idempotent, interrupted runs resumed."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest
import tifffile

from edge_app.cli import main as puf
from edge_app.errors import PufError
from fabrication import verb_segment
from fabrication.batch_dir import BatchDir
from fabrication.registry import Registry
from tests.segment_support import make_layout, snap, templates_for

LAYOUT = make_layout()


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    verb_segment.add_arguments(parser)
    return verb_segment.run(parser.parse_args([str(a) for a in argv]))


def photographed_batch(root, slipped: bool = True):
    """A batch folder the way `puf photograph --sim` leaves it: fields 0-3 (field 1 slipped
    off by a whole row or column of labels), field 4 a truncated TIFF, field 5 a text file."""
    batch = root / LAYOUT.batch_id
    fields = batch / "fields"
    fields.mkdir(parents=True)
    LAYOUT.save(batch / "layout.json")
    entries, truths = [], {}
    for field in range(6):
        name = f"field_{field:04d}.tif"
        stage = list(LAYOUT.field_center_um(field))
        meta = {"batch_id": LAYOUT.batch_id, "field": field, "stage_um": stage,
                "exposure_ms": 40.0, "pixel_size_um": 0.6}
        entries.append({**meta, "file": name})
        if field == 5:
            (fields / name).write_text("not a picture")
            continue
        image, truth = snap(LAYOUT, min(field, 3), seed=2 if field == 1 and slipped else 3,
                            slip=1.0 if field == 1 and slipped else 0.0)
        truths[field] = truth
        tifffile.imwrite(fields / name, cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                         photometric="rgb", description=json.dumps(meta), metadata=None)
        if field == 4:  # a field whose file was cut short
            data = (fields / name).read_bytes()
            (fields / name).write_bytes(data[: len(data) // 3])
    (fields / "manifest.json").write_text(json.dumps(
        {"batch_id": LAYOUT.batch_id, "pixel_size_um": 0.6, "fields": entries}))
    return batch, truths


def registry_rows(path) -> list[tuple]:
    with Registry(path) as registry:
        return [tuple(sorted(label.__dict__.items())) for label in registry.labels()]


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("factory")
    batch, truths = photographed_batch(root)
    templates_for(LAYOUT).save(batch / "pattern_templates.npz")
    assert run(batch, "--overlay") == 0
    return batch, truths, root / "registry.sqlite"


def test_every_label_gets_the_right_crop_and_id(segmented) -> None:
    batch, truths, registry_path = segmented
    with Registry(registry_path) as registry:
        found = registry.labels(LAYOUT.batch_id, status="found")
        for field, truth in truths.items():
            if field == 4:
                continue
            whole = {t["label_id"] for t in truth["labels"] if t["whole"]
                     and t["field"] == min(field, 3)}
            mine = {label.label_id.replace(f"-{field:04d}-", f"-{min(field, 3):04d}-")
                    for label in found if label.field == field}
            assert mine == whole, f"field {field}"
        for label in found:
            truth = truths[label.field]
            true_id = label.label_id.replace(f"-{label.field:04d}-", f"-{min(label.field, 3):04d}-")
            corners = next(t["corners_px"] for t in truth["labels"] if t["label_id"] == true_id)
            assert np.abs(np.array(json.loads(label.corners)) - corners).max() < 4
            crop = batch / label.crop_path
            assert crop.name == f"{label.label_id}.png"
            assert hashlib.sha256(crop.read_bytes()).hexdigest() == label.sha256
            assert cv2.imread(str(crop)).shape == (128, 128, 3)
            assert label.pattern == LAYOUT.pattern_of(label.field, label.slot)
            assert label.glyph_pattern == label.pattern and label.quality.border_contrast > 0.5
        assert len(list((batch / "crops").glob("*.png"))) == len(found)


def test_bad_fields_are_listed_and_every_label_is_accounted_for(segmented) -> None:
    batch, truths, registry_path = segmented
    with Registry(registry_path) as registry:
        status = {f.field: f.status for f in registry.fields(LAYOUT.batch_id)}
        assert status == {0: "done", 1: "done", 2: "done", 3: "done", 4: "unreadable",
                          5: "unreadable"}
        assert "truncated" in registry.field(LAYOUT.batch_id, 4).detail
        labels = registry.labels(LAYOUT.batch_id)
        assert len(labels) == 6 * 12  # every label of every field has a record
        cut = [label for label in labels if label.field == 1 and label.status == "rejected"]
        assert cut and all(label.reason == "edge" for label in cut)
        assert all(label.status == "missing" for label in labels if label.field in (4, 5))
        assert registry.field(LAYOUT.batch_id, 1).shift_x_um is not None


def test_overlays_show_each_field(segmented) -> None:
    batch, _, _ = segmented
    pictures = sorted(p.name for p in (batch / "overlays").iterdir())
    assert pictures == [f"field_{f:04d}.jpg" for f in range(4)]
    assert cv2.imread(str(batch / "overlays" / "field_0001.jpg")).shape == (960, 1280, 3)


def test_running_again_changes_nothing_and_skips_recorded_fields(segmented, capsys) -> None:
    batch, _, registry_path = segmented
    before = registry_rows(registry_path)
    crops = {p.name: p.stat().st_mtime_ns for p in (batch / "crops").iterdir()}
    capsys.readouterr()
    assert run(batch, "--overlay", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fields"]["skipped"] == 4 and summary["fields"]["segmented_now"] == 2
    assert registry_rows(registry_path) == before
    assert run(batch, "--force", "--overlay") == 0
    assert registry_rows(registry_path) == before
    # identical crops are not rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (batch / "crops").iterdir()} == crops


def test_summary_table_and_json(segmented, capsys) -> None:
    batch, _, registry_path = segmented
    assert run(batch, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fields"]["done"] == 4 and summary["fields"]["unreadable"] == 2
    assert summary["labels"]["expected"] == 72
    assert summary["labels_not_found_why"]["cut by the image edge"] > 0
    assert {p["field"] for p in summary["problems"]} == {4, 5}
    assert run(batch) == 0
    table = capsys.readouterr().out
    assert "labels expected" in table and "fields with problems" in table
    assert "field    5  unreadable" in table
    assert summary["pixel_size_um"]["from"] == "the manifest"  # where it came from, named
    assert run(batch, "--json", "--pixel-um", "0.6") == 0
    assert json.loads(capsys.readouterr().out)["pixel_size_um"]["from"] == "--pixel-um"


def test_an_interrupted_run_resumes(tmp_path, monkeypatch) -> None:
    batch, _ = photographed_batch(tmp_path, slipped=False)
    real = Registry.record_field
    calls = []

    def flaky(self, record, *args, **kwargs):
        calls.append(record.field)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, record, *args, **kwargs)

    monkeypatch.setattr(Registry, "record_field", flaky)
    assert puf(["segment", str(batch), "--registry", str(tmp_path / "r.sqlite")]) == 130
    monkeypatch.setattr(Registry, "record_field", real)
    with Registry(tmp_path / "r.sqlite") as registry:
        assert [f.field for f in registry.fields(LAYOUT.batch_id)] == [0, 1]
    assert run(batch, "--registry", tmp_path / "r.sqlite", "--json") == 0
    with Registry(tmp_path / "r.sqlite") as registry:
        assert len(registry.fields(LAYOUT.batch_id)) == 6
        assert len(registry.labels(LAYOUT.batch_id, status="found")) == 4 * 12


def test_a_slipped_field_without_glyphs_is_ambiguous_not_wrong(tmp_path) -> None:
    batch, truths = photographed_batch(tmp_path)
    assert run(batch) == 0  # no pattern templates: the slip cannot be resolved
    with Registry(tmp_path / "registry.sqlite") as registry:
        field = registry.field(LAYOUT.batch_id, 1)
        assert field.status == "ambiguous" and "offsets" in field.detail
        labels = registry.labels(LAYOUT.batch_id, field=1)
        assert {label.status for label in labels} == {"rejected"}
        assert {label.reason for label in labels} == {"ambiguous"}
    assert not list((batch / "crops").glob("T1-0001-*.png"))


def test_enrolled_crops_are_never_rewritten(tmp_path) -> None:
    batch, _ = photographed_batch(tmp_path, slipped=False)
    assert run(batch) == 0
    crop = batch / "crops" / "T1-0000-05.png"
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.record_enrolled("/bundles/b1", ["T1-0000-05"])
    crop.write_bytes(b"the enrolled crop")  # stands for what the fingerprint was made from
    assert run(batch, "--force") == 0
    assert crop.read_bytes() == b"the enrolled crop"
    with Registry(tmp_path / "registry.sqlite") as registry:
        assert registry.label("T1-0000-05").status == "enrolled"


def test_a_folder_of_real_images(tmp_path, capsys) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for n in (3, 7):
        image, _ = snap(LAYOUT, 3 if n == 3 else 2)
        cv2.imwrite(str(scans / f"scan_{n:02d}.png"), image)
    (scans / "notes.txt").write_text("the lab book")
    blank = tmp_path / "blank"  # no label to measure the pixel size on: the field says what to give
    blank.mkdir()
    cv2.imwrite(str(blank / "empty.png"), np.full((600, 800, 3), 90, np.uint8))
    assert run(blank, "--registry", tmp_path / "b.sqlite", "--json") == 0
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert len(problems) == 1 and "give --pixel-um" in problems[0]["detail"]
    assert run(scans, "--pixel-um", "0.6", "--registry", tmp_path / "r.sqlite", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["batch_id"] == "scans" and summary["labels"]["found"] == 24
    crops = sorted(p.name for p in (scans / "crops").iterdir())
    # fields numbered in sorted name order, never by the digits in the names
    assert crops[0] == "scans-0000-00.png" and crops[-1] == "scans-0001-11.png"
    assert summary["field_order"] == "sorted file names"


def test_nothing_to_segment_is_refused_in_words(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PufError, match="no images"):
        run(tmp_path / "empty", "--pixel-um", "0.6")
    with pytest.raises(PufError, match="not a folder"):
        run(tmp_path / "nowhere")
    batch, _ = photographed_batch(tmp_path / "b", slipped=False)
    (batch / "fields" / "manifest.json").write_text("{broken")
    with pytest.raises(PufError, match="manifest"):
        run(batch)


def test_a_second_segment_on_the_same_batch_is_told_the_batch_is_busy(tmp_path) -> None:
    from edge_app.folder_lock import exclusive

    batch, _ = photographed_batch(tmp_path, slipped=False)
    with exclusive(BatchDir(batch).segment_lock_path, "the first run"):  # a run in progress
        with pytest.raises(PufError, match=f"the batch {batch} is in use by another process \\(pid [0-9]+\\)"):
            run(batch)
        assert not (batch / "crops").exists() or not any((batch / "crops").iterdir())
    assert run(batch) == 0  # free again once the first run ends


def test_the_verb_joins_the_puf_command(capsys) -> None:
    with pytest.raises(SystemExit):
        puf(["segment", "--help"])
    assert "puf segment out/B0001 --overlay" in capsys.readouterr().out


def test_resegmenting_a_reshot_field(tmp_path) -> None:
    batch, _ = photographed_batch(tmp_path, slipped=False)
    assert run(batch) == 0
    shutil.copy(batch / "fields" / "field_0002.tif", batch / "fields" / "field_0004.tif")
    assert run(batch) == 0  # the truncated field was re-shot: it is segmented now
    with Registry(tmp_path / "registry.sqlite") as registry:
        assert registry.field(LAYOUT.batch_id, 4).status == "done"
        assert len(registry.labels(LAYOUT.batch_id, field=4, status="found")) == 12


def test_a_stage_that_reports_its_true_position_settles_a_slip(tmp_path) -> None:
    """No glyph templates, but the stage's encoders recorded where it really went."""
    from tests.segment_support import CALIBRATION

    batch, truths = photographed_batch(tmp_path)
    (batch / "stage").mkdir()
    CALIBRATION.save(batch / "stage" / "calibration.json")
    manifest = json.loads((batch / "fields" / "manifest.json").read_text())
    for entry in manifest["fields"]:
        planned = CALIBRATION.design_to_stage(*LAYOUT.field_center_um(entry["field"]))
        error = truths[entry["field"]]["stage_error_um"] if entry["field"] in truths else (0, 0)
        entry["stage_um"] = [planned[0] + error[0], planned[1] + error[1]]
    (batch / "fields" / "manifest.json").write_text(json.dumps(manifest))
    assert run(batch, "--max-shift-um", "60") == 0
    with Registry(tmp_path / "registry.sqlite") as registry:
        assert registry.field(LAYOUT.batch_id, 1).status == "done"
        found = registry.labels(LAYOUT.batch_id, field=1, status="found")
        where = {t["label_id"]: t["corners_px"] for t in truths[1]["labels"]}
        assert found and all(np.abs(np.array(json.loads(label.corners)) - where[label.label_id]).max() < 4
                             for label in found)


# ---- plain folders of real images ---------------------------------------------------

def plain_folder(root, names: dict[str, int], turns: int = 0):
    """A folder of PNGs without metadata: each name holds a simulated frame of that field
    of LAYOUT, turned `turns` quarter turns counter-clockwise (a camera mounted turned)."""
    root.mkdir(parents=True)
    for name, field in names.items():
        image, _ = snap(LAYOUT, field)
        cv2.imwrite(str(root / name), np.ascontiguousarray(np.rot90(image, turns)))
    return root


def test_timestamp_names_are_fields_in_name_order(tmp_path, capsys) -> None:
    names = {"IMG_20251130_101500.png": 2, "IMG_20251130_101230.png": 0}
    scans = plain_folder(tmp_path / "scans", names)
    assert run(scans, "--pixel-um", "0.6", "--registry", tmp_path / "r.sqlite", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"]["found"] == 24 and summary["field_order"] == "sorted file names"
    with Registry(tmp_path / "r.sqlite") as registry:
        assert {f.field: f.file for f in registry.fields("scans")} == {
            0: "IMG_20251130_101230.png", 1: "IMG_20251130_101500.png"}


def test_an_order_file_numbers_the_fields_and_skips_what_it_does_not_name(tmp_path, capsys) -> None:
    scans = plain_folder(tmp_path / "scans", {"a.png": 0, "b.png": 2, "c.png": 3})
    order = tmp_path / "order.csv"
    order.write_text("file,field\nb.png,5\na.png,2\n")
    assert run(scans, "--pixel-um", "0.6", "--order", order, "--registry", tmp_path / "r.sqlite",
               "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images_not_in_order_file"] == ["c.png"]
    assert summary["field_order"] == "order file order.csv" and summary["labels"]["found"] == 24
    with Registry(tmp_path / "r.sqlite") as registry:
        assert {f.field: f.file for f in registry.fields("scans")} == {2: "a.png", 5: "b.png"}
    assert run(scans, "--pixel-um", "0.6", "--order", order, "--registry", tmp_path / "r.sqlite") == 0
    assert "images not in the order file, skipped: 1 (c.png)" in capsys.readouterr().out
    order.write_text("file,field\nb.png,5\nd.png,1\n")
    with pytest.raises(PufError, match=r"not in .*scans: d.png \(row 3\)"):
        run(scans, "--pixel-um", "0.6", "--order", order)


def crops_of(batch) -> dict:
    return {p.stem.split("-", 1)[1]: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32)
            for p in (batch / "crops").glob("*.png")}


@pytest.fixture(scope="module")
def upright_crops(tmp_path_factory):
    """The crops of fields 0 and 1 photographed the right way up, by field-slot."""
    scans = plain_folder(tmp_path_factory.mktemp("upright") / "scans", {"f0.png": 0, "f1.png": 1})
    assert run(scans, "--pixel-um", "0.6") == 0
    return crops_of(scans)


@pytest.mark.parametrize("turns, degrees", [(1, -90), (3, 90)])
def test_a_turned_camera_is_found_from_the_glyphs(tmp_path, capsys, upright_crops, turns: int,
                                                  degrees: int) -> None:
    scans = plain_folder(tmp_path / "scans", {"f0.png": 0, "f1.png": 1}, turns)
    templates = tmp_path / "t.npz"
    templates_for(LAYOUT).save(templates)
    assert run(scans, "--pixel-um", "0.6", "--templates", templates, "--json") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rotation"] == {"deg": degrees, "from": "the glyphs of field 0",
                                   "fields_segmented_at": {str(degrees): 2}}
    assert summary["labels"]["found"] == 24 and not summary["warnings"] and not captured.err
    with Registry(tmp_path / "registry.sqlite") as registry:
        found = registry.labels("scans", status="found")
    # a plain folder's labels take the pattern their glyph reads: the truth
    assert [label.pattern for label in found] == [LAYOUT.pattern_of(label.field, label.slot)
                                                  for label in found]
    assert all(label.glyph_pattern == label.pattern and label.glyph_score > 0.5 for label in found)
    # every crop is the same label, the same way up, as when the camera was upright
    turned = crops_of(scans)
    assert turned.keys() == upright_crops.keys()
    for key, crop in turned.items():
        assert np.corrcoef(crop.ravel(), upright_crops[key].ravel())[0, 1] > 0.9, key


def test_a_turned_camera_without_templates_points_to_rotation_deg(tmp_path, capsys) -> None:
    scans = plain_folder(tmp_path / "scans", {"f0.png": 0}, turns=1)
    assert run(scans, "--pixel-um", "0.6", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fields"]["ambiguous"] == 1
    assert "--rotation-deg" in summary["problems"][0]["detail"]
    assert "--templates" in summary["problems"][0]["detail"]
    assert run(scans, "--pixel-um", "0.6", "--rotation-deg", "-90", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"]["found"] == 12 and summary["rotation"]["from"] == "--rotation-deg"


def test_labels_without_a_pattern_class_are_warned_about(tmp_path, capsys) -> None:
    scans = plain_folder(tmp_path / "scans", {"f0.png": 0})
    assert run(scans, "--pixel-um", "0.6") == 0
    err = capsys.readouterr().err
    assert "warning: the labels have no pattern class" in err and "--templates" in err
    with Registry(tmp_path / "registry.sqlite") as registry:
        assert {label.pattern for label in registry.labels("scans")} == {"unknown"}


def test_a_layout_file_gives_a_plain_folder_its_patterns(tmp_path, capsys) -> None:
    scans = plain_folder(tmp_path / "scans", {"f0.png": 0, "f1.png": 1})
    LAYOUT.save(tmp_path / "design.json")
    assert run(scans, "--pixel-um", "0.6", "--layout", tmp_path / "design.json", "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["batch_id"] == LAYOUT.batch_id and not captured.err
    with Registry(tmp_path / "registry.sqlite") as registry:
        found = registry.labels(LAYOUT.batch_id, status="found")
        assert len(found) == 24
        assert all(label.pattern == LAYOUT.pattern_of(label.field, label.slot) for label in found)
    with pytest.raises(PufError, match="no batch layout"):
        run(scans, "--pixel-um", "0.6", "--layout", tmp_path / "nowhere.json")


def test_the_pixel_size_is_found_from_the_labels(tmp_path, capsys) -> None:
    """No --pixel-um: the label size in each image gives it (edge_app.label_size)."""
    scans = plain_folder(tmp_path / "scans", {"f0.png": 0, "f1.png": 1})
    assert run(scans, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"]["found"] == 24
    assert summary["pixel_size_um"]["from"] == "the labels' size in the images"
    assert abs(summary["pixel_size_um"]["median"] - 0.6) < 0.03


def test_a_folder_with_a_pattern_set_reads_every_glyph_and_records_the_set(tmp_path, capsys) -> None:
    """No layout file: the glyphs of a saved pattern set give each label its pattern and the
    camera's turn, and the registry's batch carries the set (for training)."""
    from edge_app.pattern_set import PatternSet
    from fabrication.patterns import builtin_pattern_set
    from fabrication.registry import Registry

    builtin_pattern_set().subset(set(LAYOUT.patterns)).save(tmp_path / "patterns.json")
    scans = plain_folder(tmp_path / "scans", {"a.png": 0, "b.png": 1}, turns=1)
    assert run(scans, "--pattern-set", tmp_path / "patterns.json", "--glyph-um", LAYOUT.glyph_size_um,
               "--registry", tmp_path / "r.sqlite", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"]["found"] == 24 and not summary.get("warnings")
    with Registry(tmp_path / "r.sqlite") as registry:
        layout = registry.batch_layout("scans")
        labels = registry.labels("scans")
    assert layout.pattern_set == PatternSet.load(tmp_path / "patterns.json")
    # the glyphs read are the patterns LAYOUT etched in those slots
    assert all(lb.pattern == LAYOUT.pattern_of(lb.field, lb.slot) for lb in labels)


def test_a_removed_field_image_keeps_its_crops_and_is_reported(tmp_path, capsys) -> None:
    batch, _ = photographed_batch(tmp_path)
    templates_for(LAYOUT).save(batch / "pattern_templates.npz")
    assert run(batch) == 0
    with Registry(tmp_path / "registry.sqlite") as registry:
        before = registry.labels(LAYOUT.batch_id, field=0)
    crops = {p.name: p.read_bytes() for p in (batch / "crops").glob(f"{LAYOUT.label_id(0, 0)[:-2]}*.png")}
    assert len(crops) == sum(label.status == "found" for label in before) > 0
    (batch / "fields" / "field_0000.tif").unlink()
    capsys.readouterr()
    assert run(batch, "--json", "--force") == 0
    summary = json.loads(capsys.readouterr().out)
    assert {p["field"]: p["status"] for p in summary["problems"]}[0] == "image missing"
    assert {p.name: p.read_bytes() for p in (batch / "crops").glob(f"{LAYOUT.label_id(0, 0)[:-2]}*.png")} == crops
    with Registry(tmp_path / "registry.sqlite") as registry:
        assert registry.labels(LAYOUT.batch_id, field=0) == before
        assert registry.field(LAYOUT.batch_id, 0).status == "done"
