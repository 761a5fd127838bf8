"""Enrollment into per-pattern shards: idempotent, incremental, budgeted, tuned; and
`puf evaluate` writing a calibrated threshold into the re-signed bundle."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.errors import PufError
from fabrication.registry import FieldRecord, LabelRecord, Registry
from tests.bundle_support import enroll_crops, keys, sim_batch, write_crop_folder
from tests.trainer_support import subset
from trainer import index_build
from trainer.enroll import EnrollOptions, enroll


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_enrolling_the_same_batch_twice_adds_nothing(base, fresh, key):
    first = enroll(fresh, enroll_crops(base), key, progress=False)
    before = manifest(fresh)
    second = enroll(fresh, enroll_crops(base), key, progress=False)
    after = manifest(fresh)
    assert first.labels_added == 12 and second.labels_added == 0
    assert second.skipped == {"already enrolled": 12}
    assert after["shards"]["labels"] == after["shards"]["vectors"] == 12
    assert after["shards"]["classes"] == before["shards"]["classes"]
    ids = [i for e in after["shards"]["classes"].values() for i in np.load(fresh / e["ids"]).tolist()]
    assert len(ids) == len(set(ids)) == 12


def test_a_new_batch_appends_and_leaves_other_shards_alone(base, fresh, key, tmp_path):
    crops = enroll_crops(base)
    enroll(fresh, subset(crops, tmp_path / "a", range(0, 6)), key, progress=False)
    before = manifest(fresh)
    inodes = {name: (fresh / name).stat().st_ino for name in before["files"]}
    report = enroll(fresh, crops, key, progress=False)
    after = manifest(fresh)
    assert report.labels_added == 6 and report.skipped == {"already enrolled": 6}
    assert after["shards"]["labels"] == 12
    layout = sim_batch().layout
    new_patterns = {layout.pattern_of(0, s) for s in range(6, 12)} - {layout.pattern_of(0, s) for s in range(6)}
    touched = set(report.shards)
    assert touched == {layout.pattern_of(0, s) for s in range(6, 12)} and new_patterns <= touched
    for pattern, entry in before["shards"]["classes"].items():
        if pattern not in touched:  # not rewritten: the same file, hard-linked into the new version
            assert after["files"][entry["index"]] == before["files"][entry["index"]]
            assert (fresh / entry["index"]).stat().st_ino == inodes[entry["index"]]
    assert load_bundle(fresh, keys(base)[1]).signer == after["signature"]["key_id"]
    assert [e["labels"] for e in after["shards"]["enrollments"]] == [6, 6]


def test_rotations_enroll_turned_copies_of_each_label(base, fresh, key):
    report = enroll(fresh, enroll_crops(base), key, EnrollOptions(rotations=4), progress=False)
    assert report.labels_added == 12 and report.vectors_added == 48
    section = manifest(fresh)["shards"]
    assert section["labels"] == 12 and section["vectors"] == 48


def test_enrolling_from_the_registry_marks_labels_enrolled_and_skips_held_out(base, fresh, key, tmp_path):
    layout = sim_batch().layout
    batch_dir = tmp_path / "V1"
    (batch_dir / "crops").mkdir(parents=True)
    crops = enroll_crops(base)
    labels = []
    for slot in range(12):
        label_id = layout.label_id(0, slot)
        shutil.copy(crops / "crops" / label_id / "m0.png", batch_dir / "crops" / f"{label_id}.png")
        status = "held_out" if slot == 3 else "found"
        labels.append(LabelRecord(label_id, layout.batch_id, 0, slot, *divmod(slot, 4), status,
                                  layout.pattern_of(0, slot), crop_path=f"crops/{label_id}.png"))
    registry_path = tmp_path / "registry.sqlite"
    with Registry(registry_path) as registry:
        registry.upsert_batch(layout, str(batch_dir))
        registry.record_field(FieldRecord(layout.batch_id, 0, "done"), labels)
    report = enroll(fresh, registry_path, key, progress=False)
    assert report.labels_added == 11 and report.skipped == {"held out": 1}
    with Registry(registry_path) as registry:
        assert {label.status for label in registry.labels()} == {"enrolled", "held_out"}
    (batch_dir / "crops" / f"{layout.label_id(0, 3)}.png").unlink()
    assert enroll(fresh, registry_path, key, progress=False).labels_added == 0


def test_a_changed_crop_is_not_enrolled(base, fresh, key, tmp_path):
    layout = sim_batch().layout
    batch_dir = tmp_path / "V1"
    (batch_dir / "crops").mkdir(parents=True)
    label_id = layout.label_id(0, 0)
    shutil.copy(enroll_crops(base) / "crops" / label_id / "m0.png", batch_dir / "crops" / f"{label_id}.png")
    record = LabelRecord(label_id, layout.batch_id, 0, 0, 0, 0, "found", layout.pattern_of(0, 0),
                         crop_path=f"crops/{label_id}.png", sha256="0" * 64)
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.upsert_batch(layout, str(batch_dir))
        registry.record_field(FieldRecord(layout.batch_id, 0, "done"), [record])
    before = (fresh / "manifest.json").read_bytes()
    with pytest.raises(PufError, match="no label enrolled.*1 crop changed since it was recorded"):
        enroll(fresh, tmp_path / "registry.sqlite", key, progress=False)
    assert (fresh / "manifest.json").read_bytes() == before  # nothing signed, nothing changed


def test_an_empty_and_a_1x1_crop_are_skipped_and_the_others_enrolled(base, fresh, key, tmp_path):
    import cv2

    crops = subset(enroll_crops(base), tmp_path / "crops", range(4))
    empty, tiny, *_ = sorted(p.name for p in (crops / "crops").iterdir())
    (crops / "crops" / empty / "m0.png").write_bytes(b"")
    cv2.imwrite(str(crops / "crops" / tiny / "m0.png"), np.full((1, 1, 3), 128, np.uint8))
    report = enroll(fresh, crops, key, progress=False)
    assert report.labels_added == 2
    assert report.skipped == {"crop unreadable or not square": 1, "crop smaller than 8x8 px": 1}
    assert report.skipped_examples["crop unreadable or not square"] == empty
    assert len(load_bundle(fresh, keys(base)[1]).shards) == 2


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Unit vectors around a few hundred centres, like fingerprints of one pattern."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, d))
    x = centres[rng.integers(0, 256, n)] + 1.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_index_plans_follow_size_and_budget():
    assert index_build.plan_index(1000, 128, 1e6).kind == "flat"
    assert index_build.plan_index(1000, 128, 200).kind == "sq8"
    assert index_build.plan_index(100_000, 128, 1e6).kind == "ivf_sq8"
    # below IVF-SQ8: PQ codes in memory re-ranked from SQ8 rows on storage, SQ8's scores
    assert index_build.plan_index(100_000, 512, 350).kind == "ivf_pq_sq8"
    plan = index_build.plan_index(4_155_600, 512, 100)
    assert plan.kind == "ivf_pq_sq8" and plan.pq_m == 32 and plan.bytes_per_vector <= 100
    assert index_build.plan_index(200, 512, 500, exact_max=10).kind == "ivf_sq4"  # too few to train PQ
    plan = index_build.plan_index(4_155_600, 512, 30)
    assert plan.kind == "ivf_pq" and plan.bytes_per_vector <= 30
    with pytest.raises(PufError, match="raise the memory budget"):
        index_build.plan_index(100_000, 512, 10)


@pytest.mark.parametrize(("budget", "kind"), [(300.0, "ivf_sq8"), (60.0, "ivf_pq_sq8")])
def test_an_approximate_shard_is_tuned_to_the_recall_target(budget, kind):
    vectors = clustered(8000, 128, 1)
    plan = index_build.plan_index(len(vectors), 128, budget, exact_max=1000)
    assert plan.kind == kind and plan.bytes_per_vector <= budget
    index = index_build.build_index(vectors, plan)
    # at a cosine of 0.5, moved along the data, PQ's rounding reorders near-ties at any nprobe
    tuned = index_build.tune(index, vectors, target_recall=0.99, genuine_cosine=0.6)
    assert tuned["recall_at_1"]["genuine_like"] >= 0.99
    assert 1 <= tuned["search"]["nprobe"] < plan.nlist
    assert index_build.index_kind(index) == plan.kind


def test_the_tuned_nprobe_finds_re_captures_that_move_along_the_shards_spread():
    """A re-capture's embedding moves mostly within the space the fingerprints span, and so
    crosses more IVF cells than a move in a random direction does (photos did: tuned on random
    moves, nprobe missed real re-captures' labels). Tuned for re-captures at 0.8, the index must
    find re-captures at 0.9 that move only within that space."""
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.standard_normal((256, 24)))[0]  # the fingerprints span 24 of 256 dimensions
    centres = rng.standard_normal((64, 24))
    x = (centres[rng.integers(0, 64, 20000)] + 0.8 * rng.standard_normal((20000, 24))) @ basis.T
    vectors = x + 0.05 * rng.standard_normal(x.shape)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    plan = index_build.plan_index(len(vectors), 256, 1e9, exact_max=1000)
    index = index_build.build_index(vectors, plan)
    index_build.tune(index, vectors, target_recall=0.99, genuine_cosine=0.8)
    rows = rng.choice(len(vectors), 2000, replace=False)
    move = rng.standard_normal((2000, 24)) @ basis.T
    move -= (move * vectors[rows]).sum(axis=1, keepdims=True) * vectors[rows]
    move /= np.linalg.norm(move, axis=1, keepdims=True)
    re_captures = (0.9 * vectors[rows] + np.sqrt(1 - 0.9**2) * move).astype(np.float32)
    found = index.search(re_captures, 1)[1][:, 0] == index_build.exact_top1(vectors, re_captures)
    assert found.mean() >= 0.99


def test_labels_enrolled_in_many_copies_are_tuned_by_label():
    """Near-identical copies of a label (augmented enrollment) swap places under SQ8's
    rounding, so the exact search's top row is out of reach even scanning every cell; the
    top label is not, and a few cells find it."""
    rng = np.random.default_rng(3)
    labels = clustered(200, 128, 3)
    copies = np.repeat(labels, 30, axis=0) + 0.002 * rng.standard_normal((6000, 128)).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    owners = np.repeat(np.arange(200), 30)
    plan = index_build.plan_index(len(copies), 128, 300, exact_max=1000)
    index = index_build.build_index(copies, plan)
    by_row = index_build.tune(index, copies, target_recall=0.99, genuine_cosine=0.5)
    by_label = index_build.tune(index, copies, target_recall=0.99, genuine_cosine=0.5, labels=owners)
    assert not by_row["recall_at_1"]["meets_target"] and by_row["search"]["nprobe"] == plan.nlist
    assert by_label["recall_at_1"]["genuine_like"] >= 0.99 and by_label["search"]["nprobe"] < plan.nlist


def test_a_growing_shard_turns_from_exact_to_ivf_without_reembedding():
    from trainer.enroll import update_shard

    vectors = clustered(3000, 128, 2)
    options = EnrollOptions(exact_max=2000)
    index, ids, entry = update_shard(None, np.zeros(0, "S1"), vectors[:1500], [f"L{i}" for i in range(1500)],
                                     1e6, options, 0.5)
    assert entry["kind"] == "flat" and entry["action"] == "built"
    index, ids, entry = update_shard(index, ids, vectors[1500:], [f"L{i}" for i in range(1500, 3000)], 1e6,
                                     options, 0.5)
    assert entry["kind"] == "ivf_sq8" and entry["action"] == "rebuilt"
    assert index.ntotal == len(ids) == 3000 and entry["recall_at_1"]["genuine_like"] >= 0.99
    # the rebuilt index still finds every old vector as itself
    found = index.search(vectors[:200], 1)[1][:, 0]
    assert np.mean(found == np.arange(200)) >= 0.99


def test_evaluate_writes_a_calibrated_threshold_and_figures(base, fresh, key, tmp_path):
    from trainer.evaluation import evaluate

    enroll(fresh, enroll_crops(base), key, progress=False)
    queries = write_crop_folder(tmp_path / "queries", sim_batch(), (0, 1), shots=0, handheld=1)
    report = evaluate(fresh, [queries], far=2e-2, classify=False, private_key=key, out=tmp_path / "report",
                      progress=False, frr_bound=0.25).to_dict()
    assert report["genuine_queries"] == 12 and report["impostor_queries"] == 12
    comparisons = report["comparisons"]
    assert comparisons["impostor_pairs"] == 12 * 11 + 12 * 12
    assert comparisons["genuine_mean"] > comparisons["impostor_max"]
    assert report["decisions_at_threshold"]["genuine_accepted"] == 1.0
    assert report["decisions_at_threshold"]["impostor_accepted"] == 0.0
    decision = manifest(fresh)["decision"]
    assert decision["far"] == 2e-2 and not decision["provisional"]
    assert decision["threshold"] == pytest.approx(report["decision"]["threshold"])
    loaded = load_bundle(fresh, keys(base)[1])  # re-signed, still trusted
    assert loaded.threshold == pytest.approx(decision["threshold"])
    for name in ("det.png", "scores.png", "timings.png"):
        image = (tmp_path / "report" / name)
        assert image.stat().st_size > 5000


def test_puf_keygen_and_enroll_from_the_command_line(base, fresh, tmp_path, capsys):
    from edge_app.cli import main

    assert main(["keygen", str(tmp_path / "k" / "factory"), "--json"]) == 0
    key_id = json.loads(capsys.readouterr().out)["key_id"]
    assert main(["keygen", str(tmp_path / "k" / "factory")]) == 2  # never overwritten silently
    assert "exists" in capsys.readouterr().err
    assert main(["enroll", "--bundle", str(fresh), "--labels", str(enroll_crops(base)),
                 "--key", str(tmp_path / "k" / "factory.key"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels_added"] == 12 and report["signed_by"] == key_id
    (tmp_path / "trusted").mkdir()
    shutil.copy(tmp_path / "k" / "factory.pub", tmp_path / "trusted")
    assert load_bundle(fresh, tmp_path / "trusted").signer == key_id


def test_a_batch_of_another_pattern_set_is_refused(fresh, key, base, tmp_path):
    """A model trained on the built-in glyphs cannot read a factory's own: enroll says so
    and leaves the bundle as it was."""
    from edge_app.layout import BatchLayout
    from edge_app.pattern_set import PatternSet
    from fabrication.pattern_import import load_pattern_set

    letters = load_pattern_set("font:futural:ABDEFJKLPQRT")  # the built-in letters, stroke for stroke
    # the factory's own letters: the same names, every other stroke moved
    moved = PatternSet.from_glyphs("mine", {name: [[(x + 0.1 * (i % 2), y) for x, y in stroke] for i, stroke in
                                                   enumerate(letters.strokes(name))] for name in letters.names})
    layout = BatchLayout("OWN1", tuple(moved.names) * 200, pattern_set=moved)
    label_id = layout.label_id(0, 0)
    batch_dir = tmp_path / "OWN1"
    (batch_dir / "crops").mkdir(parents=True)
    shutil.copy(enroll_crops(base) / "crops" / sim_batch().layout.label_id(0, 0) / "m0.png",
                batch_dir / "crops" / f"{label_id}.png")
    record = LabelRecord(label_id, "OWN1", 0, 0, 0, 0, "found", layout.pattern_of(0, 0),
                         crop_path=f"crops/{label_id}.png")
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.upsert_batch(layout, str(batch_dir))
        registry.record_field(FieldRecord("OWN1", 0, "done"), [record])
    before = (fresh / "manifest.json").read_bytes()
    with pytest.raises(PufError, match="batch OWN1 uses pattern set 'mine'.*does not know.*puf train --init"):
        enroll(fresh, tmp_path / "registry.sqlite", key, progress=False)
    assert (fresh / "manifest.json").read_bytes() == before
