"""Verdict reasons as typed values (`edge_app.verdicts`): each one said in English by the
verifier and in the inspector's words in every language the app has, none left in English;
`puf verify --json` names each verdict's reason by its code."""

import json

import cv2
import pytest

from edge_app.app.i18n import set_language
from edge_app.app.inspection import SAID, plain_reason
from edge_app.cli import main
from edge_app.label_crop import Quality
from edge_app.verdicts import Kind, Reason, Why
from edge_app.verify import CaptureLimits, Verdict, capture_problem
from tests.bundle_support import sim_batch

# a value for every parameter a reason takes
SAMPLE = {"label_id": "V1-0000-05", "time": "2026-12-01T10:00:00Z", "reason": "stolen shipment",
          "updated": "2026-11-30", "pattern": "V", "score": 0.41, "threshold": 0.62, "allowed": "V or Y",
          "confidence": 0.55, "glyph": "Y", "notes": "; 1 cut by the photo's edge", "found": 221.0,
          "label_px": 300.0, "tolerance": 0.3, "sharpness": 1.2, "limit": 1.7, "contrast": 0.3, "level": 5.0,
          "clipped": 0.09, "unchecked": 1, "labels": 13, "problem": "cannot read broken.jpg"}


def shown(why: Why, language: str) -> str:
    verdict = Verdict(verdict=why.reason.kind, why=why, threshold=0.62, label_id=why.params.get("label_id"))
    set_language(language)
    try:
        return plain_reason(verdict, "2026-11-30")
    finally:
        set_language("en")


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_is_said_in_the_inspectors_words_in_every_language(reason):
    why = reason.of(**{name: SAMPLE[name] for name in reason.params})
    english, german = shown(why, "en"), shown(why, "de")
    assert reason in SAID and english and german
    assert german != english, f"{reason.value} is shown in English in the German app"
    assert why.text == reason.english.format(**why.params) and "{" not in why.text


def test_a_washed_out_capture_and_disagreeing_glyph_readings_are_shown_in_german():
    quality = Quality(sharpness=3.0, exposure=120.0, clipped=0.0, border_contrast=0.2, skew_deg=0.0, aspect=1.0,
                      size_ratio=1.0)
    washed = capture_problem(quality, CaptureLimits())
    assert washed.reason == Reason.WASHED_OUT and washed.text.startswith("washed out (border contrast 0.20 < 0.45)")
    assert "flau" in shown(washed, "de")
    disagree = Reason.GLYPHS_DISAGREE.of(pattern="V", confidence=0.55, glyph="psi")
    assert disagree.reason.kind == Kind.UNREADABLE and "Muster" in shown(disagree, "de")


def test_a_reason_takes_exactly_the_parameters_its_sentence_names():
    with pytest.raises(TypeError, match="blurred takes"):
        Reason.BLURRED.of(sharpness=0.5)  # its limit missing
    with pytest.raises(TypeError, match="matches takes"):
        Reason.MATCHES.of(label_id="V1-0000-05", score=0.9)  # one it does not say


def test_puf_verify_json_names_each_reason_by_its_code(enrolled, tmp_path, capsys):
    path, trusted, _ = enrolled
    image, _ = sim_batch().handheld(0, 4, 3)
    cv2.imwrite(str(tmp_path / "genuine.png"), image)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    main(["verify", str(tmp_path / "genuine.png"), str(tmp_path / "broken.jpg"), "--bundle", str(path),
          "--trusted-keys", str(trusted), "--json"])
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert [(v["verdict"], v["reason_code"]) for v in verdicts] == [("genuine", "matches"), ("unreadable", "bad_image")]
    assert verdicts[0]["reason"] == f"matches {verdicts[0]['label_id']}" and "broken.jpg" in verdicts[1]["reason"]
