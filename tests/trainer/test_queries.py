"""`puf queries` on simulated handheld photos, and `puf evaluate` calibrating a threshold on
them: written when the comparisons can bound the FAR asked, refused (with the numbers) when
they cannot; and the exact binomial bounds the decision records."""

import argparse
import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.errors import PufError
from fabrication.registry import FieldRecord, LabelRecord, Registry
from tests.bundle_support import enrolled_bundle, keys, sim_batch
from trainer.evaluation import evaluate
from trainer.metrics import confident_threshold, rate_bounds, trials_needed
from trainer.queries import LEDGER, build_queries

FIELDS = (0, 1)  # field 0 is enrolled (genuine queries), field 1 never was (impostor queries)


@pytest.fixture(scope="module")
def bundle(base) -> Path:
    return enrolled_bundle(base, base / "queries_bundle")


@pytest.fixture(scope="module")
def photos(base) -> Path:
    """Handheld JPEG photos of every label of fields 0 and 1, named by label id (the second
    scheme, LABEL_ID_N, for field 1)."""
    batch = sim_batch()
    folder = base / "handheld_photos"
    if not folder.exists():
        folder.mkdir()
        for field in FIELDS:
            for slot in range(batch.layout.labels_per_field):
                image, _ = batch.handheld(field, slot, seed=3)
                label_id = batch.layout.label_id(field, slot)
                name = f"{label_id}.jpg" if field == 0 else f"{label_id}_2.jpg"
                cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def labels_csv(out: Path) -> dict[str, str]:
    with (out / "labels.csv").open(newline="") as f:
        return {row["label_id"]: row["pattern"] for row in csv.DictReader(f)}


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_named_photos_become_queries_and_a_rerun_resumes(bundle, photos, tmp_path):
    import shutil

    folder = Path(shutil.copytree(photos, tmp_path / "photos"))
    (folder / "IMG_20251130_101500.jpg").write_bytes((folder / "V1-0000-00.jpg").read_bytes())
    (folder / "V1-0000-01_3.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(folder / "V1-0000-03_4.png"), np.full((600, 800, 3), 90, np.uint8))  # no label in it
    out = tmp_path / "queries"
    report = build_queries(folder, out, bundle, progress=False)
    skipped = {Path(s["photo"]).name: s["reason"] for s in report["skipped"]}
    assert "not a label id" in skipped.pop("IMG_20251130_101500.jpg")
    assert "V1-0000-01_3.jpg" in skipped.pop("V1-0000-01_3.jpg")  # the decoder's message names it
    assert "no label found" in skipped.pop("V1-0000-03_4.png")
    # handheld photos at any angle: the glyph settles nearly all of them
    assert report["written"] + len(skipped) == 24 and report["written"] >= 21
    assert all("orientation" in reason for reason in skipped.values())
    layout = sim_batch().layout
    patterns = labels_csv(out)
    assert len(patterns) == report["written"] == report["queries"]
    for label_id, pattern in patterns.items():  # the glyph's reading, right for every label
        _, field, slot = label_id.split("-")
        assert pattern == layout.pattern_of(int(field), int(slot))
        crop = cv2.imread(str(out / "crops" / label_id / "h0.png"))
        assert crop is not None and crop.shape[0] == crop.shape[1]
    again = build_queries(folder, out, bundle, progress=False)
    assert again["written"] == 0 and again["already_done"] == report["written"]
    assert len(again["skipped"]) == len(report["skipped"])
    assert labels_csv(out) == patterns
    assert all(len(list((out / "crops" / label_id).iterdir())) == 1 for label_id in patterns)


def test_queries_from_a_csv_with_the_registry(bundle, photos, tmp_path):
    layout = sim_batch().layout
    registry_path = tmp_path / "registry.sqlite"
    with Registry(registry_path) as registry:
        registry.upsert_batch(layout, str(tmp_path))
        for field, status in ((0, "enrolled"), (1, "held_out")):
            records = [LabelRecord(layout.label_id(field, slot), layout.batch_id, field, slot, *divmod(slot, 4),
                                   status, layout.pattern_of(field, slot)) for slot in range(12)]
            registry.record_field(FieldRecord(layout.batch_id, field, "done"), records)
    table = tmp_path / "photos.csv"
    rows = ["photo,label_id",
            f"{photos}/V1-0000-02.jpg,V1-0000-02",
            f"{photos}/V1-0001-04_2.jpg,V1-0001-04",
            f"{photos}/V1-0000-05.jpg,",  # no label id
            f"{photos}/V1-0000-06.jpg,V1-0005-06",  # a label the registry's batch does not have
            "missing.jpg,V1-0000-07",  # no such file
            f"{photos}/V1-0000-08.jpg,V1-0000-09"]  # the glyph contradicts the registry (or not)
    table.write_text("\n".join(rows) + "\n")
    report = build_queries(table, tmp_path / "q", bundle, registry_path=registry_path, progress=False)
    reasons = {s["where"]: s["reason"] for s in report["skipped"]}
    assert "needs both a photo and a label_id" in reasons["photos.csv line 4"]
    assert "unknown label id V1-0005-06" in reasons["photos.csv line 5"]
    assert "cannot read" in reasons["photos.csv line 6"]
    same_glyph = layout.pattern_of(0, 8) == layout.pattern_of(0, 9)
    assert ("photos.csv line 7" in reasons) != same_glyph
    assert labels_csv(tmp_path / "q")["V1-0000-02"] == layout.pattern_of(0, 2)
    assert labels_csv(tmp_path / "q")["V1-0001-04"] == layout.pattern_of(1, 4)


def test_evaluate_writes_a_calibrated_threshold_from_recaptures_and_refuses_too_few(base, bundle, photos, tmp_path):
    import shutil

    from trainer.keys import load_private_key

    queries = tmp_path / "queries"
    build_queries(photos, queries, bundle, progress=False)
    genuine = sum(label.startswith("V1-0000") for label in labels_csv(queries))
    fresh = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    key = load_private_key(keys(base)[0])
    before = manifest(fresh)
    with pytest.raises(PufError) as refused:
        evaluate(fresh, [queries], far=1e-3, classify=False, private_key=key, progress=False, frr_bound=0.3)
    message = str(refused.value)
    impostor_pairs = genuine * 11 + (len(labels_csv(queries)) - genuine) * 12
    assert "needs at least 2,995 impostor comparisons" in message and f"got {impostor_pairs:,}" in message
    assert "genuine" not in message  # enough genuine ones for an FRR bound of 0.3
    assert manifest(fresh) == before  # nothing written
    with pytest.raises(PufError, match=f"needs at least 299 genuine comparisons, got {genuine}"):
        evaluate(fresh, [queries], far=2e-2, classify=False, private_key=key, progress=False)
    report = evaluate(fresh, [queries], far=2e-2, classify=False, private_key=key, progress=False,
                      frr_bound=0.3).to_dict()
    assert report["written"] and report["comparisons"]["impostor_pairs"] == impostor_pairs
    decision = manifest(fresh)["decision"]
    assert decision["calibrated"] is True and decision["far"] == 2e-2
    # the threshold the comparisons vouch for: the FAR's 95% upper bound within the target
    assert decision["far_bounds"][0] <= decision["far_measured"] <= decision["far_bounds"][1] <= 2e-2
    assert decision["threshold"] >= decision["threshold_at_measured_far"]
    assert decision["frr_bounds"] == pytest.approx(list(rate_bounds(round(decision["frr_measured"] * genuine),
                                                                    genuine)))
    assert str(queries) in decision["calibrated_on"]
    from trainer.evaluation import describe

    assert "95% bounds" in describe(report)


def test_the_queries_verb_runs_from_its_declaration(bundle, photos, tmp_path, capsys):
    from trainer.verb_queries import verb as queries

    parser = argparse.ArgumentParser()
    queries.add_arguments(parser)
    args = parser.parse_args([str(photos), "--bundle", str(bundle), "--out", str(tmp_path / "q"), "--json"])
    assert queries.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == report["queries"] >= 21 and (tmp_path / "q" / LEDGER).exists()
    args = parser.parse_args([str(tmp_path / "nothing"), "--bundle", str(bundle), "--out", str(tmp_path / "q")])
    with pytest.raises(PufError, match="neither a folder of photos nor a CSV"):
        queries.run(args)


def test_exact_binomial_bounds():
    # zero errors in 300: the 95% one-sided upper bound 1 - 0.05^(1/300), about 3/300
    assert rate_bounds(0, 300) == (0.0, pytest.approx(1 - 0.05 ** (1 / 300), rel=1e-9))
    assert rate_bounds(0, 300)[1] == pytest.approx(0.00993608, rel=1e-6)
    assert rate_bounds(300, 300) == (pytest.approx(0.05 ** (1 / 300), rel=1e-9), 1.0)
    lower, upper = rate_bounds(5, 100)

    def at_most(k: int, n: int, p: float) -> float:
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))

    assert at_most(5, 100, upper) == pytest.approx(0.05, rel=1e-6)
    assert 1 - at_most(4, 100, lower) == pytest.approx(0.05, rel=1e-6)
    assert lower < 0.05 < upper
    big = rate_bounds(1000, 10**6)  # a large count: near the normal approximation
    assert big[0] == pytest.approx(1e-3 - 1.645 * math.sqrt(1e-3 / 1e6), rel=2e-3)
    assert big[1] == pytest.approx(1e-3 + 1.645 * math.sqrt(1e-3 / 1e6), rel=2e-3)
    for rate in (1e-2, 1e-3, 1e-5):
        n = trials_needed(rate)
        assert rate_bounds(0, n)[1] <= rate < rate_bounds(0, n - 1)[1]
        assert n == pytest.approx(3 / rate, rel=0.01)
    with pytest.raises(ValueError):
        rate_bounds(3, 2)


def test_the_confident_threshold_keeps_the_far_bound_within_the_target():
    impostor = np.random.default_rng(0).normal(0.2, 0.1, 3000)
    assert confident_threshold(impostor[:2994], 1e-3) is None  # 2,995 needed
    assert confident_threshold(impostor[:2995], 1e-3) == impostor[:2995].max()  # zero false accepts only
    far = 1e-2
    threshold = confident_threshold(impostor, far)
    accepted = int(np.sum(impostor > threshold))
    assert rate_bounds(accepted, 3000)[1] <= far < rate_bounds(accepted + 1, 3000)[1]
    assert 0 < accepted < far * 3000  # stricter than the measured-FAR threshold


def test_the_written_threshold_rejects_the_score_it_sits_above():
    """The device accepts score >= threshold and the manifest keeps 6 decimals: the threshold
    written must stay above the last impostor score the calibration rejects, rounding included."""
    from trainer.metrics import device_threshold

    for score in (0.7234564, 0.7234566, 0.5, 0.999999, -0.25):
        written = json.loads(json.dumps(device_threshold(score)))
        assert written > score and written - score <= 1.01e-6
        assert written == round(written, 6)
