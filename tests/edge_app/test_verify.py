"""The verify pipeline on handheld photos of a simulated batch: genuine, counterfeit,
unreadable, through a real int8 TFLite model, real Faiss shards and a signed bundle."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.cli import main
from edge_app.verify import CaptureLimits, Verifier
from tests.bundle_support import enrolled_bundle, keys, sim_batch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "bundle_base"
    base.mkdir(exist_ok=True)
    path = enrolled_bundle(base, tmp_path_factory.mktemp("verify") / "bundle")
    trusted = keys(base)[1]
    return path, trusted, load_bundle(path, trusted)


@pytest.fixture(scope="module")
def verifier(setup):
    return Verifier(setup[2])


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
    assert verdict.searched == [truth["pattern"]] or truth["pattern"] in verdict.searched
    assert set(verdict.timings_ms) == {"segment", "model", "search", "total"}
    assert verdict.timings_ms["total"] >= verdict.timings_ms["segment"] + verdict.timings_ms["model"]


@pytest.mark.parametrize("classify", [True, False])
def test_a_never_enrolled_label_is_counterfeit(setup, classify):
    bundle = setup[2]
    slot = never_enrolled_slot(bundle)
    image, truth = sim_batch().handheld(1, slot, 3)
    [verdict] = Verifier(bundle, classify=classify).verify_image(image)
    assert verdict.verdict == "counterfeit"
    assert verdict.label_id is None
    assert verdict.score is not None and verdict.score < verdict.threshold
    assert verdict.pattern == truth["pattern"]
    assert len(verdict.searched) == (len(bundle.shards.shards) if not classify else len(verdict.searched))
    assert not classify or truth["pattern"] in verdict.searched


def test_a_genuine_capture_verifies_searching_every_shard(setup):
    image, truth = sim_batch().handheld(0, 7, 6)
    [verdict] = Verifier(setup[2], classify=False).verify_image(image)
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


def test_puf_verify_prints_json_verdicts_and_exit_status(setup, tmp_path, capsys):
    path, trusted, bundle = setup
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


def test_puf_verify_refuses_a_tampered_bundle(setup, tmp_path, capsys):
    import shutil

    path, trusted, _ = setup
    copy = tmp_path / "bundle"
    shutil.copytree(path, copy)
    shard = next((copy / "shards").glob("*.ids.npy"))
    shard.write_bytes(shard.read_bytes().replace(b"V1-0000", b"V1-0001", 1))
    image, _ = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    assert main(["verify", str(tmp_path / "photo.jpg"), "--bundle", str(copy), "--trusted-keys", str(trusted)]) == 2
    assert f"shards/{shard.name} does not match its checksum" in capsys.readouterr().err


@pytest.mark.parametrize("threads", ["0", "100000"])
def test_puf_verify_bounds_the_model_threads(setup, tmp_path, capsys, threads):
    path, trusted, _ = setup
    image, _ = sim_batch().handheld(0, 1, 9)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    assert main(["verify", str(tmp_path / "p.png"), "--bundle", str(path), "--trusted-keys", str(trusted),
                 "--threads", threads]) == 2
    assert f"model threads must be 1-64, got {threads}" in capsys.readouterr().err


def test_the_table_names_each_label(setup, tmp_path, capsys):
    path, trusted, _ = setup
    image, truth = sim_batch().handheld(0, 1, 9)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    assert main(["verify", str(tmp_path / "p.png"), "--bundle", str(path), "--trusted-keys", str(trusted)]) == 0
    out = capsys.readouterr().out
    assert "genuine" in out and truth["label_id"] in out
    assert Path(tmp_path / "p.png").exists()


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_a_photo_at_half_or_double_magnification_verifies(verifier, scale):
    """The label size is found in the photo (label_px auto, the default)."""
    image, truth = sim_batch().handheld(0, 4, 3)
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    [verdict] = verifier.verify_image(image)
    assert verdict.verdict == "genuine", verdict.reason
    assert verdict.label_id == truth["label_id"]


def test_a_label_of_another_size_than_the_one_set_is_named_so(setup):
    image, _ = sim_batch().handheld(0, 4, 3)
    image = cv2.resize(image, None, fx=2.0, fy=2.0)
    [verdict] = Verifier(setup[2], limits=CaptureLimits(label_px=300.0)).verify_image(image)
    assert verdict.verdict == "unreadable"
    assert "not the 300 px" in verdict.reason and "auto" in verdict.reason and "edge" not in verdict.reason


def test_puf_verify_takes_a_label_size_or_auto(setup, tmp_path, capsys):
    path, trusted, _ = setup
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
