"""`puf evaluate` never signs a threshold a user would regret (issue 23.7): by default it is set
for the per-query rate at the bundle's shard sizes; it is refused when the calibration's own
queries were accepted as a label they are not (unless the user says so), when it falls outside
(0, 1), and when a few label pairs whose textures repeat dominate the impostor tail (named); and
a refusal still leaves a report, on stdout with --json, so that a script can tell why. On the
small real bundle of `tests.bundle_support` (12 labels enrolled, handheld captures of 24)."""

import json

import cv2
import pytest

from edge_app.bundle_format import MANIFEST
from edge_app.cli import main as puf
from tests.bundle_support import enroll_crops, keys, sim_batch, write_crop_folder
from trainer.enroll import enroll
from trainer.metrics import QUERY_FAR_GOAL


@pytest.fixture
def setup(base, fresh, key, tmp_path):
    """The enrolled bundle, the factory key's path, and handheld queries of fields 0 (enrolled) and 1."""
    enroll(fresh, enroll_crops(base), key, progress=False)
    return fresh, keys(base)[0], write_crop_folder(tmp_path / "queries", sim_batch(), (0, 1), shots=0, handheld=1)


def texture_of(queries, slots: range, alpha: float) -> None:
    """Never-enrolled labels V1-0001-SS photographed with `alpha` of enrolled V1-0000-SS's texture."""
    for slot in slots:
        own, other = (queries / "crops" / f"V1-000{field}-{slot:02d}" / "h0.png" for field in (1, 0))
        cv2.imwrite(str(own), cv2.addWeighted(cv2.imread(str(other)), alpha, cv2.imread(str(own)), 1 - alpha, 0))


def evaluate(capsys, bundle, queries, *options: str) -> tuple[int, dict]:
    capsys.readouterr()
    status = puf(["evaluate", "--bundle", str(bundle), "--queries", str(queries), "--no-classify",
                  "--frr-bound", "0.25", "--json", *options])
    return status, json.loads(capsys.readouterr().out)


def test_the_default_rate_is_per_query_at_the_bundle_s_shard_size(setup, capsys):
    bundle, _, queries = setup
    status, report = evaluate(capsys, bundle, queries)
    assert status == 0
    decision = report["decision"]
    assert decision["query_far"] == QUERY_FAR_GOAL and decision["labels_per_shard"] == 12
    assert "per-query FAR of 1e-05 at 12 labels" in decision["far_kind"]


def test_a_threshold_that_let_its_own_never_enrolled_queries_through_is_signed_only_when_told(setup, capsys,
                                                                                               tmp_path):
    bundle, key, queries = setup
    texture_of(queries, range(3), 0.5)  # three never-enrolled labels half like enrolled ones
    before = (bundle / MANIFEST).read_bytes()
    sign = ["--far", "0.05", "--key", str(key)]
    status, refusal = evaluate(capsys, bundle, queries, *sign, "--out", str(tmp_path / "r"))
    assert status == 2 and (bundle / MANIFEST).read_bytes() == before
    assert refusal["written"] is False and refusal["decisions_at_threshold"]["impostor_accepted"] == 0.25
    assert "3 of the calibration's own 24 queries were accepted" in refusal["error"]
    assert "V1-0001-00 as V1-0000-00" in refusal["error"] and "--sign-despite-false-accepts" in refusal["error"]
    assert "near_identical_pairs" not in refusal  # half alike is not the same texture
    assert json.loads((tmp_path / "r" / "report.json").read_text())["refused"] == refusal["refused"]
    status, report = evaluate(capsys, bundle, queries, *sign, "--sign-despite-false-accepts")
    assert status == 0 and report["written"] is True
    signed = json.loads((bundle / MANIFEST).read_text())["decision"]
    assert signed["threshold"] == report["decision"]["threshold"] and signed["signed_despite_false_accepts"] == 3


def test_repeating_textures_are_named_and_no_threshold_outside_0_1_is_signed(setup, capsys):
    bundle, key, queries = setup
    texture_of(queries, range(3), 1.0)  # three never-enrolled labels with enrolled labels' textures
    before = (bundle / MANIFEST).read_bytes()
    for extra in ([], ["--sign-despite-false-accepts"]):
        status, refusal = evaluate(capsys, bundle, queries, "--query-far", "1e-3", "--key", str(key), *extra)
        assert status == 2 and (bundle / MANIFEST).read_bytes() == before
        assert "outside (0, 1)" in refusal["error"] and not 0 < refusal["decision"]["threshold"] < 1
        assert "dominated by 3 label pair(s) that score like the same label" in refusal["error"]
        for slot in range(3):
            assert f"V1-0000-{slot:02d} and V1-0001-{slot:02d}" in refusal["error"]
        assert {tuple(p["labels"]) for p in refusal["near_identical_pairs"]} == {
            (f"V1-0000-{s:02d}", f"V1-0001-{s:02d}") for s in range(3)}


def test_every_refusal_prints_json_with_its_reason(setup, capsys, tmp_path):
    bundle, key, queries = setup
    status, refusal = evaluate(capsys, bundle, queries, "--far", "1e-3", "--key", str(key))
    assert status == 2 and refusal["written"] is False
    assert "needs at least 2,995 impostor comparisons" in refusal["too_few_pairs"] in refusal["error"]
    status, refusal = evaluate(capsys, bundle, tmp_path / "nowhere")
    assert status == 2 and refusal == {"written": False, "error": refusal["error"]} and "labels.csv" in refusal["error"]
