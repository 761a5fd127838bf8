"""`puf segment` of a plain folder given a pattern set: the labels' patterns are read from
their glyphs, so a set the labels were not etched with must not name them. Fields of the
simulated factory, etched with the built-in glyphs or with docs/examples/own_glyphs.svg."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edge_app.cli import main as puf
from edge_app.layout import BatchLayout
from fabrication.batch_dir import BatchDir
from fabrication.registry import Registry
from fabrication.segmentation.segment_batch import batch_templates
from fabrication.segmentation.segment_overlay import draw_overlay, pattern_caption

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def factory(tmp_path_factory) -> Path:
    """Two batches of two fields (24 labels each): B etched with the built-in glyphs, O with
    the example SVG's; both pattern sets as `puf patterns` writes them."""
    work = tmp_path_factory.mktemp("sets")
    assert puf(["patterns", "builtin", "--out", str(work / "builtin.json")]) == 0
    assert puf(["patterns", str(ROOT / "docs" / "examples" / "own_glyphs.svg"), "--out", str(work / "own.json")]) == 0
    for name, pattern_set in (("B", "builtin.json"), ("O", "own.json")):
        assert puf(["design", str(work / name), "--fields", "2x1", "--pattern-set", str(work / pattern_set)]) == 0
        assert puf(["etch", str(work / name), "--sim"]) == 0
        assert puf(["photograph", str(work / name), "--sim"]) == 0
    return work


def hand_over(factory: Path, fields: list[tuple[str, int]], to: Path) -> Path:
    """The fields as a plain folder of images, in this order (no layout, no manifest)."""
    to.mkdir()
    for k, (batch, field) in enumerate(fields):
        shutil.copy(factory / batch / "fields" / f"field_{field:04d}.tif", to / f"scan_{k:02d}.tif")
    return to


def segment(folder: Path, pattern_set: Path, registry: Path, capsys) -> tuple[int, str, str]:
    status = puf(["segment", str(folder), "--pattern-set", str(pattern_set), "--registry", str(registry), "--json"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def true_pattern(factory: Path, batch: str, field: int, slot: int) -> str:
    return BatchLayout.load(factory / batch / "layout.json").pattern_of(field, slot)


def test_fields_of_another_pattern_set_are_refused_and_nothing_is_recorded(factory, tmp_path, capsys):
    scans = hand_over(factory, [("B", 0), ("B", 1)], tmp_path / "scans")
    status, out, err = segment(scans, factory / "own.json", tmp_path / "registry.sqlite", capsys)
    assert status == 2 and out == ""
    assert "these fields do not show this pattern set's glyphs" in err and "'own_glyphs'" in err
    assert not (scans / "crops").exists()
    with Registry(tmp_path / "registry.sqlite") as registry:
        assert registry.labels() == [] and registry.batch_layout("scans") is None


def test_the_right_pattern_set_names_every_label(factory, tmp_path, capsys):
    for batch, pattern_set in (("B", "builtin.json"), ("O", "own.json")):
        scans = hand_over(factory, [(batch, 0), (batch, 1)], tmp_path / batch)
        status, out, err = segment(scans, factory / pattern_set, tmp_path / f"{batch}.sqlite", capsys)
        assert status == 0 and "warning" not in err
        assert json.loads(out)["labels"]["found"] == 24
        with Registry(tmp_path / f"{batch}.sqlite") as registry:
            labels = registry.labels(status="found")
        assert [lb.pattern for lb in labels] == [true_pattern(factory, batch, lb.field, lb.slot) for lb in labels]
        assert all(lb.reason is None for lb in labels)


def test_a_field_of_another_set_gets_no_patterns_it_does_not_show(factory, tmp_path, capsys):
    """Two fields of the set given, then one etched with another: its glyphs score below what
    the set's own glyphs score, so they get no pattern and say why, and the batch goes on."""
    scans = hand_over(factory, [("O", 0), ("O", 1), ("B", 0)], tmp_path / "mixed")
    status, out, err = segment(scans, factory / "own.json", tmp_path / "registry.sqlite", capsys)
    assert status == 0 and json.loads(out)["labels"]["found"] == 36
    with Registry(tmp_path / "registry.sqlite") as registry:
        labels = registry.labels(status="found")
        floor = batch_templates(BatchDir(scans), registry.batch_layout("mixed"), None).score_floor
    own = [lb for lb in labels if lb.field < 2]
    assert [lb.pattern for lb in own] == [true_pattern(factory, "O", lb.field, lb.slot) for lb in own]
    foreign = [lb for lb in labels if lb.field == 2]
    unmatched = [lb for lb in foreign if lb.reason == "glyph unmatched"]
    assert len(unmatched) >= 10 and all(lb.pattern == "unknown" for lb in unmatched)
    assert f"{len(unmatched)} labels found have no pattern class: its glyph matches none of" in err
    # a built-in glyph may look like one of the set's (a J like its hook): only then is it named
    assert 0.7 < floor < 0.85 and all(lb.glyph_score >= floor for lb in foreign if lb.pattern != "unknown")


def test_the_overlay_writes_the_pattern_each_glyph_read(factory, tmp_path, capsys):
    scans = hand_over(factory, [("O", 0), ("O", 1), ("B", 0)], tmp_path / "mixed")
    assert puf(["segment", str(scans), "--pattern-set", str(factory / "own.json"), "--overlay",
                "--registry", str(tmp_path / "registry.sqlite")]) == 0
    with Registry(tmp_path / "registry.sqlite") as registry:
        labels = registry.labels(status="found")
    captions = {lb.label_id: pattern_caption(lb) for lb in labels}
    assert all(captions[lb.label_id] == f"{lb.pattern} {lb.glyph_score:.2f}" for lb in labels if lb.field < 2)
    assert all(captions[lb.label_id] == f"{lb.glyph_pattern} {lb.glyph_score:.2f}: no pattern"
               for lb in labels if lb.reason == "glyph unmatched")
    # the caption is drawn: the overlay of a field whose labels read other glyphs differs inside their boxes
    image = cv2.imread(str(scans / "scan_00.tif"))
    field = {lb.slot: lb for lb in labels if lb.field == 0}
    result = SimpleNamespace(labels=[], elapsed_ms=1.0)
    drawn = draw_overlay(image, result, field, {}, [], None)
    other = {slot: replace(lb, glyph_pattern="axe" if lb.glyph_pattern != "axe" else "key")
             for slot, lb in field.items()}
    changed = np.argwhere(np.any(draw_overlay(image, result, other, {}, [], None) != drawn, axis=2))
    assert len(changed) > 0
    scale = drawn.shape[1] / image.shape[1]
    boxes = [np.asarray(json.loads(lb.corners)) * scale for lb in field.values()]
    assert all(any(box[:, 0].min() <= x <= box[:, 0].max() + 60 and box[:, 1].min() <= y <= box[:, 1].max()
                   for box in boxes) for y, x in changed)
