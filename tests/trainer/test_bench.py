"""`puf bench`: how the database and the queries are made, the keypoint matcher on real
simulated crops, the second stage's decision, and the verb end to end at a tiny size."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.errors import PufError
from tests.bundle_support import sim_batch
from trainer.harness.bench import database, keypoints, queries
from trainer.harness.bench.plan import BenchPlan, counterfeit_batches, enrolled_batches
from trainer.harness.paper import VECTORS as PAPER_VECTORS


def test_the_paper_plan_makes_41556_distinct_labels_of_100_copies():
    plan = BenchPlan()
    assert plan.labels == 41_556 and plan.vectors == plan.real_vectors == PAPER_VECTORS
    assert plan.stand_in_vectors == 0 and database.fill_blocks(plan) == []  # no stand-ins
    assert BenchPlan(labels=7, augmented=3).vectors == 21  # any size: every label distinct
    filled = BenchPlan(labels=6_000, vectors=PAPER_VECTORS)  # stand-ins only when asked for
    blocks = database.fill_blocks(filled)
    assert filled.real_vectors + sum(blocks) * filled.augmented == PAPER_VECTORS == filled.vectors
    assert filled.stand_in_vectors == sum(blocks) * 100 and 6_000 + sum(blocks) == 41_556
    assert all(b <= filled.labels for b in blocks)
    enrolled, never = enrolled_batches(plan), counterfeit_batches(plan)
    assert sum(len(numbers) for _, numbers in enrolled) == plan.labels  # every label whole: none to spare
    assert sum(len(numbers) for _, numbers in never) == plan.counterfeit
    assert not {s.film_seed for s, _ in enrolled} & {s.film_seed for s, _ in never}
    quick = BenchPlan.quick()
    assert quick.vectors < 100_000 and quick.genuine == quick.counterfeit == 500


def test_a_plan_of_a_few_pattern_classes_fills_their_shards_with_distinct_labels():
    from trainer.simdata import make_layout

    plan = BenchPlan(labels=300, augmented=1, patterns=3, counterfeit=250)
    for made, count in ((enrolled_batches(plan), 300), (counterfeit_batches(plan), 250)):
        taken = [(spec.batch_id, n, make_layout(spec).patterns[n]) for spec, numbers in made for n in numbers]
        assert len(taken) == len(set(taken)) == count  # distinct labels, exactly as many as asked
        assert {p for _, _, p in taken} == {"1", "2", "3"}  # the first three classes only
    jobs = queries._photo_jobs(plan, [f"BG1-0000-{s:02d}" for s in range(12)], lambda kind, n: False)
    never = {(spec["batch_id"], f, s) for spec, chunk in jobs for kind, n, f, s, _ in chunk if kind == "counterfeit"}
    assert len(never) == 250 and {b for b, _, _ in never} <= {s.batch_id for s, _ in counterfeit_batches(plan)}
    every = BenchPlan(labels=1_300, augmented=1)  # all classes: every label of the films, in order
    assert [len(numbers) for _, numbers in enrolled_batches(every)] == [1_200, 100]
    with pytest.raises(PufError, match="pattern classes"):
        enrolled_batches(BenchPlan(labels=10, augmented=1, patterns=1_000))


@pytest.mark.parametrize("sizes", [dict(labels=0), dict(vectors=10, labels=5), dict(genuine=-1), dict(workers=0),
                                   dict(augmented=2.5)])
def test_impossible_sizes_are_refused(sizes):
    with pytest.raises(PufError):
        BenchPlan(**sizes)


def test_rotated_blocks_keep_the_geometry_of_real_fingerprints():
    turn = database.rotation(256, 1, 0)
    assert np.allclose(turn @ turn.T, np.eye(256), atol=1e-4)
    assert not np.allclose(turn, database.rotation(256, 2, 0))
    x = np.random.default_rng(0).standard_normal((5, 256)).astype(np.float32)
    assert np.allclose((x @ turn.T) @ (x @ turn.T).T, x @ x.T, atol=1e-3)
    assert database.source_label("R3-BG1-0001-02") == "BG1-0001-02"
    assert database.source_label("BG1-0001-02") == "BG1-0001-02"


def test_genuine_photos_and_clones_are_of_enrolled_labels_and_counterfeits_of_other_films():
    plan = BenchPlan.quick(labels=30, genuine=70, counterfeit=25, clones=3)
    enrolled = [f"BG1-{i // 12:04d}-{i % 12:02d}" for i in range(0, 60, 2)]  # some labels uncaptured
    jobs = queries._photo_jobs(plan, enrolled, lambda kind, n: kind == "genuine" and n == 5)
    items = [(spec["batch_id"], *item) for spec, chunk in jobs for item in chunk]
    genuine = {n: f"{b}-{f:04d}-{s:02d}" for b, kind, n, f, s, _ in items if kind == "genuine"}
    assert set(genuine) == set(range(70)) - {5}  # taken photos are left out
    assert set(genuine.values()) <= set(enrolled)
    assert genuine[0] == genuine[30] == enrolled[0]
    seeds = {(n, seed) for b, kind, n, f, s, seed in items if kind == "genuine"}
    assert dict(seeds)[0] != dict(seeds)[30]  # a label photographed twice: two new photos
    counterfeit = [(b, f, s) for b, kind, n, f, s, _ in items if kind == "counterfeit"]
    assert len(set(counterfeit)) == 25 and all(b.startswith("BC") for b, _, _ in counterfeit)
    assert sum(kind == "clone" for _, kind, *_ in items) == 3


@pytest.fixture(scope="module")
def crops():
    """Microscope crops of a simulated batch and a new handheld photo of two of its labels, cut
    by the device's segmentation."""
    from trainer.simdata import SimSpec, device_templates, field_captures, segment_handheld

    batch = sim_batch()
    spec = SimSpec(batch.layout.batch_id, 0, batch.layout.field_cols, batch.layout.field_rows, 1, 0)
    enrolled = {label: crop for label, _, crop in field_captures(spec, batch.layout, batch.film, 0)}
    templates = device_templates(batch.layout)
    handheld = {}
    for slot in (1, 6):
        image, truth = batch.handheld(0, slot, seed=77)
        crop, outcome = segment_handheld(image, truth, batch.layout, templates, 128)
        assert outcome == "ok"
        handheld[truth["label_id"]] = crop
    return enrolled, handheld


def test_keypoints_tell_a_recapture_of_a_label_from_other_labels(crops):
    enrolled, handheld = crops
    gallery = {label: keypoints.features(crop) for label, crop in enrolled.items()}
    for label, crop in handheld.items():
        query = keypoints.features(crop)
        scores = {other: keypoints.inliers(query, f) for other, f in gallery.items()}
        assert keypoints.same_label(query, gallery[label])
        assert max(n for other, n in scores.items() if other != label) < keypoints.MIN_INLIERS
        assert keypoints.identify(crop, gallery).label_id == label
    assert keypoints.identify(np.zeros((128, 128, 3), np.uint8), gallery).label_id is None


def test_features_ignore_the_border_and_glyph_every_label_shares():
    mask = keypoints._mask()
    side = keypoints.SIDE
    assert mask[0].max() == 0 and mask[:, -1].max() == 0 and mask[side // 2, side // 2] == 0
    assert mask[side // 5, side // 2] == 255


def test_second_stage_vetoes_or_decides_among_the_top_candidates(crops):
    enrolled, handheld = crops
    label = next(iter(handheld))
    others = [other for other in enrolled if other != label][:3]
    features = {other: keypoints.features(crop) for other, crop in enrolled.items()}
    # the fingerprint ranks two wrong labels first, the right one third and below threshold
    candidates = [(others[0], 0.80), (others[1], 0.70), (label, 0.60), (others[2], 0.50)]
    stage = keypoints.second_stage(handheld[label], candidates, features.__getitem__)
    assert stage.inliers[2] >= keypoints.MIN_INLIERS > max(stage.inliers[:2])
    assert stage.decide(1, 0.75)[0] is None  # the top candidate clears the threshold but is vetoed
    assert stage.decide(2, None)[0] is None
    assert stage.decide(3, None)[0] == label  # keypoints decide among the top three
    assert stage.decide(3, 0.75)[0] is None  # a veto never accepts below the fingerprint threshold
    assert stage.decide(4, 0.55)[0] == label
    assert stage.decide(3, None)[1] >= stage.decide(1, None)[1] > 0  # more candidates, more time


def test_bench_verb_at_a_tiny_size_writes_its_results(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["bench", "--labels", "12", "--augmented", "3", "--vectors", "60", "--genuine", "4", "--counterfeit", "3",
            "--clones", "1", "--keypoint-gallery", "6", "--second-stage", "2", "--whole-queries", "3", "--workers", "1",
            "--normalisation", "4",
            "--out", str(out), "--cache", str(cache), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    result = json.loads((out / "bench.json").read_text())
    assert printed["database"] == result["database"]
    assert result["database"]["vectors"] == 60 and result["database"]["real_labels"] == 12
    assert result["database"]["labels"] == 20  # 12 real, 8 rotated stand-ins
    assert result["database"]["stand_in_labels"] == 8
    assert "Stand-ins: 8 of the 20 labels" in (out / "bench.md").read_text()  # said beside the capacity figures
    assert "every accuracy figure is of the 12 distinct labels" in result["database"]["how"]
    assert "augmentation" in result["database"]["how"]
    for mode in ("with_classification", "without_classification"):
        rows = result[mode]
        assert rows["genuine"]["photos"] == 4 and rows["counterfeit"]["photos"] == 3 and rows["clone"]["photos"] == 1
        for row in rows.values():
            assert 0 <= row["correct"] <= row["photos"] and 0 <= row["accuracy"] <= 1
        assert rows["genuine"]["timings_ms"]["total"]["median"] >= rows["genuine"]["timings_ms"]["model"]["median"]
    assert result["with_classification"]["counterfeit"]["accepted"] == 0
    whole = result["whole_index"]
    assert whole["vectors"] == 60 and whole["photos"] == 3 and 0 < whole["queries"] <= 3
    assert whole["chosen"]["recall_at_1"] == 1.0  # 60 vectors: an exact index, which finds what exact search does
    assert "| nprobe |" in (out / "bench.md").read_text()
    assert result["keypoint_baseline"]["gallery_labels"] == 6
    # 20 labels in 44 patterns: no shard holds the three labels a cohort needs, and the report says so
    assert result["normalisation"] == {"genuine": 0, "counterfeit": 0, "rules": None}
    assert "too few photos whose shard holds three labels" in (out / "bench.md").read_text()
    assert [r["k"] for r in result["second_stage"]["rows"]] == [0] + [k for k in range(1, 6) for _ in range(2)]
    assert (out / "bench.md").read_text().count("| paper |") == 2
    # exact search scores every photo (--exact defaults to all): a shard of this size is searched exactly, so the
    # device's score is exact search's for the turn it kept, and exact search keeps the best of every turn
    for kind, device in result["scores"].items():
        exact = result["exact_scores"][kind]
        assert len(exact) == len(device)
        assert [e is None for e in exact] == [d is None for d in device]
        assert all(e >= d - 1e-5 for d, e in zip(device, exact, strict=True) if d is not None)
    assert "Exact search" in (out / "bench.md").read_text()
    assert Path(out / "bench_scores.png").stat().st_size > 0
    photos = sorted((cache).glob("photos-*/*/*.jpg"))
    assert len(photos) == 8
    # a re-run takes nothing again: every photo, fingerprint and shard comes from the cache
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert main(argv) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    # parts sized 0 are left out, and the report leaves out their tables
    assert main([*argv, "--unclassified", "0", "--keypoint-gallery", "0", "--second-stage", "0",
                 "--whole-queries", "0", "--normalisation", "0"]) == 0
    lean = json.loads((out / "bench.json").read_text())
    assert lean["without_classification"] == {} and lean["whole_index"] is None
    assert lean["keypoint_baseline"] is None and lean["second_stage"] is None and lean["normalisation"] is None
    assert lean["exact_scores"] == result["exact_scores"]  # sized by --exact, which defaults to every photo
    for kind, row in result["with_classification"].items():  # the same photos, the same verdicts
        assert {k: lean["with_classification"][kind][k] for k in ("photos", "correct", "accepted", "unreadable")} \
            == {k: row[k] for k in ("photos", "correct", "accepted", "unreadable")}
    assert lean["scores"] == result["scores"]
    report = (out / "bench.md").read_text()
    assert "| nprobe |" not in report and "Keypoint baseline" not in report and report.count("| here ") == 1


def test_bench_refuses_bad_sizes(tmp_path, capsys):
    assert main(["bench", "--labels", "10", "--augmented", "10", "--vectors", "50", "--out", str(tmp_path)]) == 2
    assert "cannot hold" in capsys.readouterr().err
    assert main(["bench", "--scaling", "ten", "--out", str(tmp_path)]) == 2


def test_the_whole_index_holds_the_shards_vectors_in_label_order():
    plan = BenchPlan(labels=3, augmented=2, vectors=14, genuine=1, counterfeit=1)
    real = np.random.default_rng(1).standard_normal((6, 256)).astype(np.float32)
    blocks = list(database.database_rows(plan, real))
    assert [len(b) for b in blocks] == [6, 6, 2]  # the real labels, all three turned, the first one turned again
    assert np.allclose(blocks[2], real[:2] @ database.rotation(256, 2, 0).T)
    assert database.label_of(np.arange(14), plan).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_a_patterns_vectors_are_its_real_labels_copies_then_each_stand_in_blocks():
    plan = BenchPlan(labels=3, augmented=2, vectors=14, genuine=1, counterfeit=1)
    real = np.random.default_rng(1).standard_normal((6, 256)).astype(np.float32)
    labels = database.Labels(["a", "b", "c"], ["1", "2", "1"], np.zeros((3, 4, 4, 3), np.uint8))
    vectors, ids = database.pattern_vectors(plan, labels, real, "1")
    blocks = list(database.database_rows(plan, real))
    assert ids == ["a", "a", "c", "c", "R1-a", "R1-a", "R1-c", "R1-c", "R2-a", "R2-a"]
    assert np.allclose(vectors, np.concatenate([real[[0, 1, 4, 5]], blocks[1][[0, 1, 4, 5]], blocks[2][[0, 1]]]),
                       atol=1e-5)
    assert database.pattern_vectors(plan, labels, real, "7")[0].shape == (0, 256)  # a pattern no label has


def test_the_counterfeit_tail_estimates_acceptance_beyond_the_photos_taken():
    from trainer.harness.bench.report import counterfeit_tail

    rng = np.random.default_rng(3)
    result = {"threshold": 0.75, "scores": {"genuine": rng.normal(0.9, 0.02, 5_000).tolist(),
                                           "counterfeit": rng.normal(0.5, 0.05, 20_000).tolist()}}
    tail = counterfeit_tail(result)
    assert tail["queries"] == 20_000 and tail["accepted"] == 0
    assert 0 < tail["estimated"] < tail["upper_bound"] < 2e-4  # 5 sigma: about 3e-7, under what 0 of 20,000 bounds
    assert 0.5 + 4 * 0.05 < tail["threshold_1e-5"] < 0.75 and tail["method_1e-5"] == "generalized Pareto"
    assert tail["genuine_at_1e-5"] == 5_000
    few = {"threshold": 0.75, "scores": {"genuine": [0.9], "counterfeit": [0.4, 0.5]}}
    assert counterfeit_tail(few) is None


def test_a_threshold_chosen_on_the_first_photos_is_tested_on_the_others():
    from trainer.harness.bench.report import threshold_check

    rng = np.random.default_rng(4)
    counterfeit = rng.normal(0.5, 0.05, 40_000)
    counterfeit[25_000] = 0.99  # one accepted among the photos tested
    scores = {"genuine": rng.normal(0.9, 0.02, 4_000).tolist(), "counterfeit": counterfeit.tolist()}
    scores["genuine"][3_000] = 0.6  # a genuine photo the chosen threshold turns away
    scores["counterfeit"][3] = scores["counterfeit"][30_000] = scores["genuine"][1] = None  # unreadable
    check = threshold_check({"scores": scores})
    assert check["chosen_on"] == 20_000 and check["genuine_from"] == 2_000
    assert check["counterfeit_readable"] == 19_999 and check["genuine_readable"] == 2_000
    others = rng.normal(0.3, 0.05, 20_000).tolist()
    alone = threshold_check({"scores": {**scores, "counterfeit": scores["counterfeit"][:20_000] + others}})
    assert check["threshold"] == alone["threshold"]  # chosen on the first half only
    assert 0.5 + 4 * 0.05 < check["threshold"] < 0.99
    assert check["counterfeit_accepted"] == 1 and check["genuine_accepted"] == 1_999
    assert 1e-5 < check["upper_bound"] < 5e-4 and 0 < check["estimated"] < 1e-3
    assert threshold_check({"scores": {"genuine": [0.9], "counterfeit": [0.4, None, 0.5]}}) is None


def test_normalisation_rules_score_a_query_from_its_best_labels():
    from trainer.harness.bench import normalisation

    scores = normalisation.rule_scores(np.array([0.9, 0.5, 0.4, 0.3]))
    assert scores["best"] == 0.9 and np.isclose(scores["margin"], 0.4)
    assert np.isclose(scores["cohort"], 0.5 / np.std([0.5, 0.4, 0.3]))
    rng = np.random.default_rng(5)
    genuine = {"best": rng.normal(0.9, 0.02, 3_000), "margin": rng.normal(0.3, 0.1, 3_000),
               "cohort": rng.normal(8, 1, 3_000)}
    counterfeit = {"best": rng.normal(0.5, 0.05, 20_000), "margin": rng.normal(0.05, 0.05, 20_000),
                   "cohort": rng.normal(3, 1, 20_000)}
    rules = normalisation.compare(genuine, counterfeit)
    assert [a["genuine_share"] for a in rules["best"]["at"]] == [1.0, 0.999]
    best, margin = rules["best"]["at"], rules["margin"]["at"]
    assert best[0]["counterfeits_over"] == 0 and best[0]["tail_estimate"] < 1e-5  # 5 SDs apart
    assert margin[0]["counterfeits_over"] > margin[1]["counterfeits_over"] > 0  # 2.5 SDs: overlapping
    assert rules["best"]["gap_in_counterfeit_sd"] > 0 > rules["margin"]["gap_in_counterfeit_sd"]
    assert margin[1]["threshold"] > margin[0]["threshold"]  # turning 0.1% of genuine away raises the bar
