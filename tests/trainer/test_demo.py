"""`puf demo` on a tiny batch: the whole line, then handheld photos of every kind verified
against the signed bundle it enrolled with the shipped model."""

import contextlib
import io
import json
import sqlite3

import cv2
import pytest

from edge_app.cli import main as puf
from trainer.harness.demo_report import tables

PHOTOS = 6


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    figures = out / "docs"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = puf(["demo", "--out", str(out), "--fields", "2x1", "--photos", str(PHOTOS), "--held-out", "0.5",
                      "--figures", str(figures), "--json"])
    assert status == 0, stderr.getvalue()[-2000:]
    return out, figures, json.loads(stdout.getvalue()), stderr.getvalue()


def test_the_line_runs_and_records_the_batch(demo):
    out, _, report, log = demo
    for step in ("design", "etch", "photograph", "segment", "keygen", "enroll"):
        assert f"== puf {step}" in log  # the verbs' own output goes to stderr under --json
    batch = out / "B0001"
    assert len(json.loads((batch / "fields" / "manifest.json").read_text())["fields"]) == 2
    assert len(list((batch / "crops").glob("B0001-*.png"))) == 24
    assert len(list((batch / "overlays").glob("field_*"))) == 2
    with contextlib.closing(sqlite3.connect(out / "registry.sqlite")) as db:  # Python 3.13 warns of an unclosed one
        statuses = dict(db.execute("select status, count(*) from labels group by status").fetchall())
    assert statuses == {"enrolled": 12, "held_out": 12}  # field 1 held out: never enrolled
    assert report["batch"] | {"enrolled": 12, "held_out": 12, "held_out_fields": [1]} == report["batch"]
    assert report["enroll"]["labels_total"] == 12 and report["enroll"]["signed_by"]
    assert report["machine"]["cpus"] >= 1 and report["machine"]["python"].startswith("3.")
    assert report["options"]["film"] == "default"


def test_a_bad_film_style_is_refused_before_the_line_starts(tmp_path, capsys):
    assert puf(["demo", "--out", str(tmp_path / "out"), "--film", "grain_um=30"]) == 2
    assert "grain_um must be between 1 and 20" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_genuine_photos_are_accepted_and_everything_else_rejected(demo):
    _, _, report, _ = demo
    results = report["summary"]["results"]
    assert set(results) == {"genuine", "held_out", "other_film", "clone"}
    genuine = results["genuine"]
    assert genuine["photos"] == PHOTOS and genuine["unreadable"] <= 1
    assert genuine["accepted"] == genuine["correct"] == PHOTOS - genuine["unreadable"]
    assert genuine["rate"] == 1.0 and genuine["wrong_label"] == 0
    assert genuine["score"]["min"] >= report["summary"]["threshold"]
    for kind in ("held_out", "other_film", "clone"):
        assert results[kind]["photos"] == PHOTOS // 2
        assert results[kind]["accepted"] == 0, kind
    queries = report["queries"]
    assert len(queries) == PHOTOS + PHOTOS + PHOTOS // 2
    for q in queries:
        if q["kind"] in ("other_film", "clone"):
            # found, fingerprinted, searched in a real shard, and refused
            assert q["verdict"]["verdict"] == "counterfeit", q
            assert q["verdict"]["score"] < q["verdict"]["threshold"], q
    # each clone copies the label of one of the genuine photos
    assert {q["label_id"] for q in queries if q["kind"] == "clone"} <= {
        q["label_id"] for q in queries if q["kind"] == "genuine"}


def test_times_are_reported_per_stage_and_per_photo(demo):
    _, _, report, _ = demo
    stages = report["stages"]
    for stage in ("design", "etch", "photograph", "segment", "enroll", "queries", "total"):
        assert stages[stage] > 0, stage
    assert stages["segment_field_ms"]["median"] > 0
    verify = report["summary"]["verify_ms"]
    for part in ("segment", "model", "search", "total"):
        assert 0 < verify[part]["median"] <= verify[part]["p90"], part
    assert verify["total"]["median"] >= verify["model"]["median"]
    text = tables(report)
    for needle in ("98.87% real", "98.73% fake", "30.7 ms", "8.5 ms in shard", "2,400 labels in ~40 s",
                   "(clone)", "| enrolled labels, new handheld photos (genuine) | 6 |"):
        assert needle in text, needle


def test_pictures_and_figures_are_written(demo):
    out, figures, report, _ = demo
    sizes = {"field": 1000, "genuine": 900, "counterfeit": 900, "clone": 1400, "scores": 900,
             "field_vs_truth": 1000, "power_series": 1000}
    assert set(report["pictures"]) == set(sizes)
    for name, width in sizes.items():
        image = cv2.imread(report["pictures"][name])
        assert image is not None and image.shape[1] >= width, name
        copied = cv2.imread(report["figures"][name])
        assert copied is not None and copied.shape == image.shape, name
    assert {p.name for p in figures.iterdir()} == {
        "demo_field.jpg", "demo_genuine.jpg", "demo_counterfeit.jpg", "demo_clone.jpg", "demo_scores.png",
        "field_vs_truth.jpg", "power_series.jpg"}


def test_the_photos_give_the_same_verdicts_on_puf_verify_and_the_app_command_is_given(demo, capsys):
    out, _, report, _ = demo
    photos = sorted((out / "handheld").glob("*.jpg"))
    assert len(photos) == len(report["queries"])
    assert report["try"][-1] == (f"puf app --bundle {out / 'bundle'} --trusted-keys {out / 'trusted_keys'} "
                                 f"--camera file:{out / 'handheld'}")
    puf(["verify", *map(str, photos), "--bundle", str(out / "bundle"), "--trusted-keys", str(out / "trusted_keys"),
         "--json"])
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    for q in report["queries"]:
        if q["verdict"]["corners_px"] is None:
            continue
        mine = [v for v in verdicts
                if v["source"].rsplit("#", 1)[0] == q["photo"] and v["corners_px"] == q["verdict"]["corners_px"]]
        assert len(mine) == 1 and mine[0]["verdict"] == q["verdict"]["verdict"], q["photo"]
        assert mine[0]["label_id"] == q["verdict"]["label_id"]
