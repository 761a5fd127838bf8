"""The verify pipeline on handheld photos of a simulated batch: genuine, counterfeit,
unreadable, through a real int8 TFLite model, real Faiss shards and a signed bundle."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import main
from edge_app.verify import CaptureLimits, Verifier, find_labels
from tests.bundle_support import sim_batch


def never_enrolled_slot(bundle) -> int:
    """A label of field 1 (never enrolled) whose pattern has a shard: a real search."""
    layout = sim_batch().layout
    return next(s for s in range(12) if layout.pattern_of(1, s) in bundle.shards.shards)


@pytest.mark.parametrize("slot, seed", [(0, 3), (5, 4), (11, 5)])
def test_a_genuine_capture_verifies(verifier, slot, seed):
    image, truth = sim_batch().handheld(0, slot, seed)
    [verdict] = verifier.verify_image(image, "photo")
    assert verdict.verdict == "genuine", verdict.reason
    assert verdict.label_id == truth["label_id"]
    assert verdict.pattern == truth["pattern"]
    assert verdict.score >= verdict.threshold
    assert verdict.searched == [truth["pattern"]]  # classified: only the read pattern's shard
    assert set(verdict.timings_ms) == {"segment", "model", "search", "total"}
    assert verdict.timings_ms["total"] >= verdict.timings_ms["segment"] + verdict.timings_ms["model"]


@pytest.mark.parametrize("classify", [True, False])
def test_a_never_enrolled_label_is_counterfeit(enrolled, classify):
    bundle = enrolled[2]
    slot = never_enrolled_slot(bundle)
    image, truth = sim_batch().handheld(1, slot, 3)
    [verdict] = Verifier(bundle, classify=classify).verify_image(image)
    assert verdict.verdict == "counterfeit"
    assert verdict.label_id is None
    assert verdict.score is not None and verdict.score < verdict.threshold
    assert verdict.pattern == truth["pattern"]
    if classify:  # the read pattern's shard, not every shard
        assert truth["pattern"] in verdict.searched and len(verdict.searched) < len(bundle.shards.shards)
    else:
        assert sorted(verdict.searched) == sorted(bundle.shards.shards)


def test_a_genuine_capture_verifies_searching_every_shard(enrolled):
    image, truth = sim_batch().handheld(0, 7, 6)
    [verdict] = Verifier(enrolled[2], classify=False).verify_image(image)
    assert verdict.verdict == "genuine" and verdict.label_id == truth["label_id"]
    assert len(verdict.searched) == 12


def test_a_blank_photo_is_unreadable(verifier):
    rng = np.random.default_rng(0)
    blank = np.clip(rng.normal(60, 3, (600, 800, 3)), 0, 255).astype(np.uint8)
    [verdict] = verifier.verify_image(blank)
    assert verdict.verdict == "unreadable"
    assert "no label found" in verdict.reason and "retake" in verdict.reason


def test_a_blurred_photo_is_unreadable_not_counterfeit(verifier):
    image, _ = sim_batch().handheld(0, 2, 3)
    [verdict] = verifier.verify_image(cv2.GaussianBlur(image, (0, 0), 4))
    assert verdict.verdict == "unreadable"
    assert "focus" in verdict.reason


def test_puf_verify_prints_json_verdicts_and_exit_status(enrolled, tmp_path, capsys):
    path, trusted, bundle = enrolled
    genuine, truth = sim_batch().handheld(0, 4, 8)
    fake, _ = sim_batch().handheld(1, never_enrolled_slot(bundle), 8)
    for name, image in (("genuine.jpg", genuine), ("fake.jpg", fake)):
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    common = ["--bundle", str(path), "--trusted-keys", str(trusted), "--json"]
    assert main(["verify", str(tmp_path / "genuine.jpg"), *common]) == 0
    out = json.loads(capsys.readouterr().out)
    [verdict] = out["verdicts"]
    assert verdict["verdict"] == "genuine" and verdict["label_id"] == truth["label_id"]
    assert set(verdict) >= {"verdict", "label_id", "score", "threshold", "pattern", "pattern_confidence",
                            "timings_ms"}
    assert main(["verify", str(tmp_path / "genuine.jpg"), str(tmp_path / "fake.jpg"),
                 str(tmp_path / "broken.jpg"), *common]) == 1
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert [v["verdict"] for v in verdicts] == ["genuine", "counterfeit", "unreadable"]
    assert "broken.jpg" in verdicts[2]["reason"]


def test_puf_verify_refuses_a_tampered_bundle(enrolled, tmp_path, capsys):
    import shutil

    path, trusted, _ = enrolled
    copy = tmp_path / "bundle"
    shutil.copytree(path, copy)
    shard = next((copy / "shards").glob("*.ids.npy"))
    shard.write_bytes(shard.read_bytes().replace(b"V1-0000", b"V1-0001", 1))
    image, _ = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    assert main(["verify", str(tmp_path / "photo.jpg"), "--bundle", str(copy), "--trusted-keys", str(trusted)]) == 2
    assert f"shards/{shard.name} does not match its checksum" in capsys.readouterr().err


@pytest.mark.parametrize("threads", ["0", "100000"])
def test_puf_verify_bounds_the_model_threads(enrolled, tmp_path, capsys, threads):
    path, trusted, _ = enrolled
    image, _ = sim_batch().handheld(0, 1, 9)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    assert main(["verify", str(tmp_path / "p.png"), "--bundle", str(path), "--trusted-keys", str(trusted),
                 "--threads", threads]) == 2
    assert f"model threads must be 1-64, got {threads}" in capsys.readouterr().err


def test_the_table_names_each_label(enrolled, tmp_path, capsys):
    path, trusted, _ = enrolled
    image, truth = sim_batch().handheld(0, 1, 9)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    assert main(["verify", str(tmp_path / "p.png"), "--bundle", str(path), "--trusted-keys", str(trusted)]) == 0
    out = capsys.readouterr().out
    assert "genuine" in out and truth["label_id"] in out
    bundle, header, row = out.splitlines()  # the photo's one label: its row names the photo, the verdict, the id
    manifest = json.loads((path / "manifest.json").read_text())
    assert bundle == (f"bundle {path}: sequence {manifest['sequence']}, signed {manifest['created'][:10]}; signer: "
                      f"key {manifest['signature']['key_id']}")
    assert header.startswith("label in photo") and row.split()[0].endswith("p.png#0")
    assert row.split()[1:3] == ["genuine", truth["label_id"]]


def test_an_expired_bundle_is_refused_and_json_names_the_sequence_and_signer(enrolled, base, tmp_path, capsys):
    from datetime import UTC, datetime, timedelta

    from edge_app.bundle_format import utc_text
    from tests.bundle_support import keys
    from trainer.keys import load_private_key, sign_manifest

    path, trusted, _ = enrolled
    image, _ = sim_batch().handheld(0, 1, 9)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    assert main(["verify", str(tmp_path / "p.png"), "--bundle", str(path), "--trusted-keys", str(trusted),
                 "--json"]) == 0
    manifest = json.loads((path / "manifest.json").read_text())
    out = json.loads(capsys.readouterr().out)
    assert (out["sequence"], out["signed_by"]) == (manifest["sequence"], manifest["signature"]["key_id"])
    expired = Path(shutil.copytree(path, tmp_path / "expired"))
    now = datetime.now(UTC)
    data = dict(manifest, created=utc_text(now - timedelta(days=2)), expires=utc_text(now - timedelta(minutes=1)))
    (expired / "manifest.json").write_text(json.dumps(sign_manifest(data, load_private_key(keys(base)[0]))))
    assert main(["verify", str(tmp_path / "p.png"), "--bundle", str(expired), "--trusted-keys", str(trusted)]) == 2
    captured = capsys.readouterr()
    assert f"the bundle {expired} expired on" in captured.err and captured.out == ""


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_a_photo_at_half_or_double_magnification_verifies(verifier, scale):
    """The label size is found in the photo (label_px auto, the default)."""
    image, truth = sim_batch().handheld(0, 4, 3)
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    [verdict] = verifier.verify_image(image)
    assert verdict.verdict == "genuine", verdict.reason
    assert verdict.label_id == truth["label_id"]


def test_a_label_of_another_size_than_the_one_set_is_named_so(enrolled):
    image, _ = sim_batch().handheld(0, 4, 3)
    image = cv2.resize(image, None, fx=2.0, fy=2.0)
    [verdict] = Verifier(enrolled[2], limits=CaptureLimits(label_px=300.0)).verify_image(image)
    assert verdict.verdict == "unreadable"
    assert "not the 300 px" in verdict.reason and "auto" in verdict.reason and "edge" not in verdict.reason


def test_puf_verify_takes_a_label_size_or_auto(enrolled, tmp_path, capsys):
    path, trusted, _ = enrolled
    image, truth = sim_batch().handheld(0, 4, 3)
    photo = tmp_path / "half.png"
    cv2.imwrite(str(photo), cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    for size, expected in (("auto", "genuine"), ("300", "unreadable"), ("150", "genuine")):
        code = main(["verify", str(photo), "--bundle", str(path), "--trusted-keys", str(trusted),
                     "--label-px", size, "--json"])
        [verdict] = json.loads(capsys.readouterr().out)["verdicts"]
        assert verdict["verdict"] == expected and code == (0 if expected == "genuine" else 3), verdict["reason"]
    with pytest.raises(SystemExit):
        main(["verify", str(photo), "--bundle", str(path), "--label-px", "big"])
    assert "neither auto nor a number" in capsys.readouterr().err


def crowded_photo(bundle) -> tuple[np.ndarray, tuple[float, float]]:
    """Handheld photos of the 12 enrolled labels and of one never-enrolled label set side by
    side on a 5x3 grid (each framed by its own film level, so no label is cut in two), the
    never-enrolled one in the bottom right corner, the top corners blank, and a blank strip on
    the left so that it is the label farthest from the photo's centre: 13 whole labels in one
    photo. Returns the photo and where the never-enrolled label is."""
    batch = sim_batch()
    shots = [batch.handheld(0, slot, 20 + slot)[0] for slot in range(12)]
    fake = batch.handheld(1, never_enrolled_slot(bundle), 40)[0]
    blank = np.full_like(fake, 60)
    framed = []
    for tile in [blank, *shots[:3], blank, *shots[3:], fake]:
        out = np.empty((tile.shape[0] + 80, tile.shape[1] + 80, 3), np.uint8)
        out[:] = np.median(tile, axis=(0, 1))
        out[40:-40, 40:-40] = tile
        framed.append(out)
    photo = np.vstack([np.hstack(framed[row * 5:row * 5 + 5]) for row in range(3)])
    photo = np.hstack([np.full((photo.shape[0], 600, 3), 60, np.uint8), photo])
    h, w = framed[0].shape[:2]
    return np.ascontiguousarray(photo), (600 + 4.5 * w, 2.5 * h)


def test_every_label_of_a_photo_with_more_than_twelve_is_verified(enrolled, tmp_path, capsys):
    path, trusted, bundle = enrolled
    photo, fake_centre = crowded_photo(bundle)
    verdicts = Verifier(bundle).verify_image(photo, "crowded")
    assert len(verdicts) == 13
    genuine = {v.label_id for v in verdicts if v.verdict == "genuine"}
    assert genuine == {sim_batch().layout.label_id(0, slot) for slot in range(12)}
    [fake] = [v for v in verdicts if v.verdict != "genuine"]
    assert fake.verdict == "counterfeit"
    assert np.linalg.norm(np.mean(fake.corners_px, axis=0) - fake_centre) < 150
    cv2.imwrite(str(tmp_path / "crowded.png"), photo)
    assert main(["verify", str(tmp_path / "crowded.png"), "--bundle", str(path), "--trusted-keys", str(trusted)]) == 1
    assert "counterfeit" in capsys.readouterr().out


def test_labels_beyond_the_limit_are_not_checked_and_the_photo_never_reads_genuine(enrolled):
    """The labels nearest the centre are verified; each one beyond is an unreadable verdict
    saying how many were not checked (here the never-enrolled one, in the far corner)."""
    bundle = enrolled[2]
    photo, fake_centre = crowded_photo(bundle)
    verdicts = Verifier(bundle, limits=CaptureLimits(max_labels=12)).verify_image(photo, "crowded")
    assert len(verdicts) == 13
    assert [v.verdict for v in verdicts].count("genuine") == 12
    [unchecked] = [v for v in verdicts if v.verdict != "genuine"]
    assert unchecked.verdict == "unreadable" and unchecked.label_id is None
    assert unchecked.reason.startswith("not checked: 1 of the 13 labels in the photo")
    assert "photograph fewer labels" in unchecked.reason and unchecked.source == "crowded#12"
    assert np.linalg.norm(np.mean(unchecked.corners_px, axis=0) - fake_centre) < 150


def test_the_app_shows_the_counterfeit_of_a_crowded_photo_and_counts_it_first(enrolled, tmp_path):
    from dataclasses import replace

    from edge_app.app.inspection import Inspector
    from edge_app.camera.base import Frame
    from edge_app.device_store import DeviceStore

    path, trusted, bundle = enrolled
    photo, _ = crowded_photo(bundle)
    inspector = Inspector(DeviceStore(tmp_path / "device"), path, trusted)
    assert inspector.open().ready
    frame = Frame(photo, "crowded.png", None, None, 0.0)
    outcome = inspector.inspect(frame)
    assert outcome.title == "COUNTERFEIT" and outcome.labels == 13
    assert outcome.summary == "13 labels in the photo (1 counterfeit, 12 genuine); showing the counterfeit one"
    inspector.verifier.limits = replace(inspector.verifier.limits, max_labels=12)
    outcome = inspector.inspect(frame)
    assert outcome.title == "RETAKE" and "not checked" in outcome.message
    assert outcome.summary == "13 labels in the photo (1 retake, 12 genuine); showing the retake one"
    assert len(inspector.history()) == 26  # every label's verdict is in the journal
    inspector.close()


def runner_up_crop(bundle) -> tuple[np.ndarray, str, str]:
    """A crafted label: the film of an enrolled label of pattern V (slot 4) around a glyph
    blended from its own and pattern Y's (slot 5), so that the pattern head reads Y, unsure,
    with V the runner-up, while the texture (the designed model masks the glyph square) is the
    enrolled V label's. Returns the canonical crop, Y and V."""
    layout = sim_batch().layout
    v_crop, y_crop = (find_labels(sim_batch().handheld(0, slot, 3)[0], CaptureLimits(), bundle.templates)
                      .labels[0].crop for slot in (4, 5))
    crafted = v_crop.copy()
    crafted[32:96, 32:96] = np.round(0.35 * v_crop[32:96, 32:96] + 0.65 * y_crop[32:96, 32:96]).astype(np.uint8)
    return crafted, layout.pattern_of(0, 5), layout.pattern_of(0, 4)


@pytest.mark.parametrize("classify", [True, False])
def test_a_match_in_the_runner_up_pattern_is_refused_when_the_glyph_reads_the_first(enrolled, classify):
    bundle = enrolled[2]
    verifier = Verifier(bundle, classify=classify)
    crafted, y, v = runner_up_crop(bundle)
    [head_only], _, _ = verifier.lookup([crafted])  # no sure glyph reading: the head's two patterns
    assert head_only.pattern == y and head_only.confidence < verifier.unsure_below and head_only.allowed == [y, v]
    assert head_only.match.pattern == v and head_only.match.score >= verifier.threshold
    assert verifier.decide(head_only, {}).verdict == "genuine"
    [lookup], _, _ = verifier.lookup([crafted], [y])  # the glyph template reads Y too
    assert lookup.allowed == [y] and (lookup.searched == [y] if classify else len(lookup.searched) == 12)
    verdict = verifier.decide(lookup, {})
    assert verdict.verdict == "counterfeit" and verdict.label_id is None, verdict.reason
    [disagree], _, _ = verifier.lookup([crafted], ["psi"])  # readings without a pattern in common
    verdict = verifier.decide(disagree, {})
    assert disagree.allowed == [] and verdict.verdict == "unreadable" and verdict.label_id is None
    assert "disagree" in verdict.reason and "psi" in verdict.reason and "retake" in verdict.reason


def test_puf_verify_refuses_a_photo_over_the_pixel_limit_before_decoding(enrolled, tmp_path, capsys):
    from tests.photo_support import png_header

    path, trusted, bundle = enrolled
    genuine, _ = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "genuine.jpg"), genuine)
    (tmp_path / "giant.png").write_bytes(png_header(20000, 20000))
    common = ["--bundle", str(path), "--trusted-keys", str(trusted), "--json"]
    assert main(["verify", str(tmp_path / "genuine.jpg"), str(tmp_path / "giant.png"), *common]) == 3
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert [v["verdict"] for v in verdicts] == ["genuine", "unreadable"]
    assert "20000x20000 pixels" in verdicts[1]["reason"] and "limit of 100 megapixels" in verdicts[1]["reason"]
    pixels = genuine.shape[0] * genuine.shape[1]
    assert main(["verify", str(tmp_path / "genuine.jpg"), "--max-pixels", str(pixels - 1), *common]) == 3
    [verdict] = json.loads(capsys.readouterr().out)["verdicts"]
    assert verdict["verdict"] == "unreadable" and "over this device's limit" in verdict["reason"]
    with pytest.raises(SystemExit):
        main(["verify", str(tmp_path / "genuine.jpg"), "--max-pixels", "0", *common])
    assert "at least 1" in capsys.readouterr().err
