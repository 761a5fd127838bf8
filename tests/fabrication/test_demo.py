import json
import sqlite3

import cv2

from edge_app.cli import main as puf


def test_demo_runs_the_line_and_draws_its_pictures(tmp_path, capsys):
    assert puf(["demo", "--out", str(tmp_path), "--fields", "2x1"]) == 0
    out = capsys.readouterr().out
    for step in ("design", "etch", "photograph", "segment"):
        assert f"== puf {step}" in out
    batch = tmp_path / "B0001"
    manifest = json.loads((batch / "fields" / "manifest.json").read_text())
    assert len(manifest["fields"]) == 2
    assert len(list((batch / "crops").glob("B0001-*.png"))) == 24
    with sqlite3.connect(tmp_path / "registry.sqlite") as db:
        assert db.execute("select count(*) from labels where batch_id = 'B0001'").fetchone()[0] == 24
    for picture in ("field_vs_truth.png", "power_series.png"):
        image = cv2.imread(str(tmp_path / picture))
        assert image is not None and image.shape[1] > 1000
    assert len(list((batch / "overlays").glob("field_*"))) == 2
    # the shipped model, signed and enrolled: genuine photos verify, lookalikes etched into
    # another film with the same design do not
    assert (tmp_path / "bundle" / "manifest.json").exists()
    verdict_lines = [line for line in out.splitlines() if ".jpg#" in line]
    assert len(verdict_lines) == 4
    for line in verdict_lines:
        expected = " genuine " if "uine_B0001" in line else " counterfeit "
        assert expected in line, line
