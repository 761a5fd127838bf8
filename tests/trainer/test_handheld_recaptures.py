"""`puf photograph BATCH --sim --handheld N`: re-captures of a simulated batch's labels, named as
`puf queries` reads them, without a line of Python (issue 23.12)."""

import csv
import json
import re

import pytest

from edge_app.cli import main as puf
from edge_app.layout import BatchLayout


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A designed batch of two fields, etched into the simulated film."""
    folder = tmp_path_factory.mktemp("hh") / "H1"
    assert puf(["design", str(folder), "--fields", "2x1"]) == 0
    assert puf(["etch", str(folder), "--sim"]) == 0
    return folder


def photograph(batch, *options: str) -> int:
    return puf(["photograph", str(batch), "--sim", *options])


def test_handheld_photos_of_chosen_labels_are_what_puf_queries_reads(batch, tmp_path, capsys):
    layout = BatchLayout.load(batch / "layout.json")
    out = tmp_path / "recaptures"
    # field 0 (say, enrolled) whole, and two labels of field 1 (say, never enrolled), two photos each
    assert photograph(batch, "--handheld", "2", "--fields", "0", "--labels", "H1-0001-00,H1-0001-03",
                      "--out", str(out)) == 0
    wanted = {layout.label_id(0, s) for s in range(layout.labels_per_field)} | {"H1-0001-00", "H1-0001-03"}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{label}_{k}.jpg" for label in wanted for k in (1, 2))
    assert f"{2 * len(wanted)} handheld photos of {len(wanted)} labels of H1 taken" in capsys.readouterr().out
    # again: nothing taken twice, nothing half-written left behind
    assert photograph(batch, "--handheld", "2", "--fields", "0", "--labels", "H1-0001-00,H1-0001-03",
                      "--out", str(out)) == 0
    assert f"0 handheld photos of {len(wanted)} labels of H1 taken, {2 * len(wanted)} already there" in \
        capsys.readouterr().out
    assert not [p for p in out.iterdir() if not re.fullmatch(r"H1-000\d-\d\d_[12]\.jpg", p.name)]

    # the batch's own glyph templates cut them (a bundle's do the same)
    assert puf(["queries", str(out), "--bundle", str(batch / "pattern_templates.npz"), "--out",
                str(tmp_path / "q"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["photos"] == 2 * len(wanted)
    with (tmp_path / "q" / "labels.csv").open() as f:
        rows = {row["label_id"]: row["pattern"] for row in csv.DictReader(f)}
    assert set(rows) <= wanted and len(rows) >= len(wanted) - 1  # a label cut by a photo's edge is skipped
    # each photo shows the label its name says: the glyph read is the one designed for its slot
    assert all(rows[label] == layout.pattern_of(*map(int, label.split("-")[1:])) for label in rows)


@pytest.mark.parametrize("options, words", [
    (["--handheld", "1", "--out", "X", "--labels", "Q9-0000-00"], "not a label of batch H1"),
    (["--handheld", "1", "--out", "X", "--labels", "H1-0007-00"], "not a label of batch H1"),
    (["--handheld", "1", "--out", "X", "--labels", "../etc"], "not a label id"),
    (["--handheld", "1", "--out", "X", "--fields", "0-4"], "not among the batch's fields 0-1"),
    (["--handheld", "1", "--out", "X", "--fields", "one"], "give field numbers"),
    (["--handheld", "0", "--out", "X"], "at least 1"),
    (["--handheld", "1"], "needs --out"),
    (["--fields", "0"], "give --handheld N"),
])
def test_bad_handheld_options_are_refused_and_nothing_is_written(batch, tmp_path, capsys, options, words):
    options = [str(tmp_path / "X") if o == "X" else o for o in options]
    assert photograph(batch, *options) == 2
    err = capsys.readouterr().err
    assert words in err and "puf photograph: error:" in err
    assert not (tmp_path / "X").exists()


def test_handheld_photos_need_the_simulated_film(tmp_path, capsys):
    assert puf(["design", str(tmp_path / "H2"), "--fields", "1x1"]) == 0
    assert puf(["photograph", str(tmp_path / "H2"), "--mm-config", "rig.cfg", "--handheld", "1",
                "--out", str(tmp_path / "o")]) == 2
    assert "give --sim" in capsys.readouterr().err
    assert photograph(tmp_path / "H2", "--handheld", "1", "--out", str(tmp_path / "o")) == 2
    assert "puf etch" in capsys.readouterr().err and not (tmp_path / "o").exists()
