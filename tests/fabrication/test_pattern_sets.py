"""Pattern sets as data: the format, importing a factory's own glyphs, and the checks that
refuse glyphs the device could not read."""

import json

import ezdxf
import numpy as np
import pytest

from edge_app.cli import main as puf
from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from edge_app.pattern_set import PatternSet
from fabrication.pattern_import import check_distinct, load_pattern_set
from fabrication.patterns import builtin_pattern_set, pattern_classes

# an arrow, a flag and an L-shape: none looks the same turned, none like another
GLYPHS_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 100">
  <g id="arrow" transform="translate(10,10)"><path d="M 40 80 L 40 0 M 10 30 L 40 0 l 30 30"/></g>
  <path id="flag" d="M110,90 V10 L170,30 L110,50"/>
  <g id="hook"><polyline points="210,10 210,90 270,90"/><circle cx="270" cy="20" r="8"/></g>
  <path id="wave" d="M 10 95 C 30 80, 50 110, 70 95 S 110 80, 130 95 A 10 10 0 0 1 150 95 V 40"/>
</svg>"""


def test_builtin_set_is_the_44_classes_and_round_trips(tmp_path):
    builtin = builtin_pattern_set()
    assert builtin.names == [p.name for p in pattern_classes()]
    builtin.save(tmp_path / "patterns.json")
    again = PatternSet.load(tmp_path / "patterns.json")
    assert again == builtin and again.sha256 == builtin.sha256
    assert check_distinct(builtin, 0.4, 0.035)["glyphs"] == 44


def test_svg_glyphs_by_element_id(tmp_path):
    (tmp_path / "glyphs.svg").write_text(GLYPHS_SVG)
    glyphs = load_pattern_set(str(tmp_path / "glyphs.svg"))
    assert glyphs.names == ["arrow", "flag", "hook", "wave"]
    arrow = np.concatenate([np.asarray(s) for s in glyphs.strokes("arrow")])
    assert np.ptp(arrow, axis=0).max() == pytest.approx(1.0) and np.abs(arrow).max() <= 0.5 + 1e-9
    assert len(glyphs.strokes("arrow")) == 2  # the M inside the path starts a second stroke
    assert len(glyphs.strokes("hook")) == 2 and len(glyphs.strokes("hook")[1]) > 20  # the circle, flattened
    # the wave's curve and arc are flattened into many points that stay on the drawing's extent
    wave = np.asarray(glyphs.strokes("wave")[0])
    assert len(wave) > 30 and np.isfinite(wave).all()


def test_a_folder_of_svg_files_and_a_dxf_by_layer(tmp_path):
    folder = tmp_path / "glyphs"
    folder.mkdir()
    (folder / "up.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 10 L5 0 L10 10"/></svg>')
    (folder / "ell.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 V10 H6"/></svg>')
    assert load_pattern_set(str(folder)).names == ["ell", "up"]

    doc = ezdxf.new()
    msp = doc.modelspace()
    msp.add_lwpolyline([(0, 0), (0, 10), (6, 10)], dxfattribs={"layer": "ell"})
    msp.add_line((20, 0), (25, 10), dxfattribs={"layer": "peak"})
    msp.add_line((25, 10), (30, 0), dxfattribs={"layer": "peak"})
    msp.add_arc((50, 5), 5, 0, 270, dxfattribs={"layer": "arc"})
    doc.saveas(tmp_path / "glyphs.dxf")
    dxf = load_pattern_set(str(tmp_path / "glyphs.dxf"))
    assert dxf.names == ["ell", "peak", "arc"]
    ell = np.asarray(dxf.strokes("ell")[0])
    assert ell[0, 1] > ell[1, 1]  # DXF's y is up: the stroke's start ends up below its corner
    assert len(dxf.strokes("arc")[0]) > 10


def test_font_glyphs_get_names_that_can_be_written():
    glyphs = load_pattern_set("font:futural:AB#")
    assert glyphs.names == ["A", "B", "u0023"]


@pytest.mark.parametrize("source, message", [
    ("font:futural:OAB", "'O' looks the same turned 180"),
    ("font:futural:69AB", "look alike"),
    ("font:nofont:AB", "no Hershey font 'nofont'"),
    ("font:futural", "font:FONT:CHARACTERS"),
    ("/no/such/glyphs.svg", "no pattern set at"),
])
def test_unreadable_or_confusable_glyphs_are_refused(source, message):
    with pytest.raises(PufError, match=message):
        pattern_set = load_pattern_set(source)
        check_distinct(pattern_set, 0.4, 0.035)


def test_puf_patterns_names_every_problem_at_once_and_the_glyph_most_like_its_turn(capsys):
    assert puf(["patterns", "font:futural:OXA69B"]) == 2
    err = capsys.readouterr().err
    for problem in ("glyph 'O' looks the same turned 180", "glyph 'X' looks the same turned 180",
                    "glyphs '9' and '6' turned 180 degrees look alike"):
        assert problem in err
    assert err.count("puf patterns: error:") == 1
    assert puf(["patterns", "builtin", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["worst_self_glyph"] in summary["glyph_names"]
    assert puf(["patterns", "builtin"]) == 0
    assert f"glyph {summary['worst_self_glyph']} and its own turn {summary['worst_self_likeness']:.2f}" \
        in capsys.readouterr().out


@pytest.mark.parametrize("data, message", [
    ([], "not a pattern set"),
    ({"format": 1, "name": "x", "classes": []}, "has no glyphs"),
    ({"format": 1, "name": "x", "classes": [{"name": "a,b", "strokes": [[[0, 0], [0.5, 0.5]]]}]}, "glyph name"),
    ({"format": 1, "name": "x", "classes": [{"name": "a", "strokes": [[[0, 0]]]}]}, "at least two points"),
    ({"format": 1, "name": "x", "classes": [{"name": "a", "strokes": [[[0, 0], [9, 9]]]}]}, "inside the unit box"),
    ({"format": 1, "name": "x", "classes": [{"name": "a", "strokes": [[["x", 0], [0, 0]]]}]}, "numbers"),
    ({"format": 1, "name": "x", "classes": [{"name": "a", "strokes": [[[0, 0], [0.1, 0]]]}] * 2}, "twice"),
    ({"format": 1, "name": "x", "classes": [{"name": "a", "strokes": [[[float("nan"), 0], [0.1, 0]]]}]},
     "inside the unit box"),
])
def test_a_bad_pattern_file_is_a_clear_error(tmp_path, data, message):
    path = tmp_path / "patterns.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PufError, match=message):
        PatternSet.load(path)


def test_a_model_knows_a_subset_but_not_other_strokes():
    builtin = builtin_pattern_set()
    assert builtin.unknown_glyphs(builtin.subset(["A", "B", "mars"])) == []
    fake_a = PatternSet.from_glyphs("mine", {"A": [[(0, 0), (1, 1)]], "B": builtin.strokes("B")})
    assert builtin.unknown_glyphs(fake_a) == ["A"]  # same name, other strokes: another class


def test_design_with_a_custom_set_carries_it_in_the_layout(tmp_path, capsys):
    (tmp_path / "glyphs.svg").write_text(GLYPHS_SVG)
    batch = tmp_path / "C1"
    assert puf(["design", str(batch), "--fields", "2x1", "--pattern-set", str(tmp_path / "glyphs.svg"),
                "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pattern_set"] == "glyphs" and summary["pattern_classes"] == 4
    layout = BatchLayout.load(batch / "layout.json")
    assert layout.pattern_set.names == ["arrow", "flag", "hook", "wave"]
    assert set(layout.patterns) == {"arrow", "flag", "hook", "wave"}
    # the laser job draws the custom strokes: every label's comment names a custom glyph
    gcode = (batch / "laser" / "job.gcode").read_text()
    assert gcode.count("; label C1-") == 24 and "; label C1-0000-00 " in gcode
    assert {line.split()[-1] for line in gcode.splitlines() if line.startswith("; label ")} <= set(layout.patterns)


def test_design_refuses_a_set_it_could_not_read(tmp_path, capsys):
    assert puf(["design", str(tmp_path / "C2"), "--fields", "1x1", "--pattern-set", "font:futural:ABO"]) == 2
    assert "'O' looks the same turned 180" in capsys.readouterr().err
    assert not (tmp_path / "C2" / "layout.json").exists()


def test_puf_patterns_writes_a_set_and_a_sheet(tmp_path, capsys):
    assert puf(["patterns", "font:futural:ABDEFJKLPQRT", "--out", str(tmp_path / "p.json"),
                "--sheet", str(tmp_path / "sheet.png"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == 12 and PatternSet.load(tmp_path / "p.json").names == summary["glyph_names"]
    import cv2

    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet is not None and sheet.shape[1] == 10 * 96


@pytest.mark.parametrize("content, message", [
    ("not xml at all <", "cannot read the SVG file"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><path id="a" d="M 0 0 L x y"/></svg>', "cannot read the path data"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><path id="a" d="M 0 0 C 1 2"/></svg>', "needs 6 numbers"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><path id="a" d="5 5 L 1 1"/></svg>', "numbers without a command"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L 1 1"/></svg>', "no element with an id"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><g id="a" transform="skewX(30)"><path d="M0 0 L1 1"/></g></svg>',
     "cannot read the transform"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><path id="dot" d="M 3 3 L 3 3"/></svg>', "must have extent"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><line id="a" x1="q" y1="0" x2="1" y2="1"/></svg>', "non-numeric"),
])
def test_a_hostile_or_broken_svg_is_a_clear_refusal(tmp_path, content, message):
    (tmp_path / "glyphs.svg").write_text(content)
    with pytest.raises(PufError, match=message):
        load_pattern_set(str(tmp_path / "glyphs.svg"))
