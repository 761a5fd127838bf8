"""Enrollment's nprobe must hold its recall target on fresh queries, not only on its own:
an nprobe is chosen when recall's lower confidence bound reaches the target
(`trainer.index_build.tune`), not its point estimate."""

import faiss
import numpy as np
import pytest

from trainer import index_build


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Unit vectors around a few hundred centres, like fingerprints of one pattern."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, d))
    x = centres[rng.integers(0, 256, n)] + 1.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fresh_recall(index, vectors: np.ndarray, nprobe: int, queries: np.ndarray) -> float:
    faiss.extract_index_ivf(index).nprobe = nprobe
    return float(np.mean(index.search(queries, 1)[1][:, 0] == index_build.exact_top1(vectors, queries)))


def test_an_nprobe_that_finds_a_thousand_queries_but_misses_fresh_ones_is_refused():
    """On this shard, nprobe 32 finds 999 of the 1,000 queries enrollment used to tune on
    (their point estimate meets 0.999), yet only about 0.997 of 24,000 fresh ones."""
    vectors = clustered(8000, 64, 1)
    plan = index_build.plan_index(len(vectors), 64, 1e9, exact_max=1000)
    index = index_build.build_index(vectors, plan)
    fresh = np.concatenate([index_build.genuine_like(vectors, 8000, 0.8, np.random.default_rng(99 + k))[0]
                            for k in range(3)])
    thousand, _ = index_build.genuine_like(vectors, 1000, 0.8, np.random.default_rng(0))
    assert fresh_recall(index, vectors, 32, thousand) >= 0.999 > fresh_recall(index, vectors, 32, fresh)

    tuned = index_build.tune(index, vectors, target_recall=0.999, genuine_cosine=0.8)
    recall = tuned["recall_at_1"]
    assert tuned["search"]["nprobe"] > 32
    assert fresh_recall(index, vectors, tuned["search"]["nprobe"], fresh) >= 0.999
    assert recall["queries"] == index_build.tuning_queries(0.999) >= 2995
    assert recall["meets_target"] and recall["lower_bound"] >= 0.999 and recall["confidence"] == 0.95


def test_a_shard_smaller_than_the_query_count_is_tuned_on_rows_moved_apart_again():
    vectors = clustered(500, 32, 3)
    queries, rows = index_build.genuine_like(vectors, 2000, 0.8, np.random.default_rng(0))
    assert len(queries) == 2000 and len(np.unique(queries, axis=0)) == 2000
    assert set(rows.tolist()) <= set(range(500))


def test_too_few_queries_never_meet_the_target_and_scan_every_cell():
    vectors = clustered(3000, 32, 2)
    plan = index_build.plan_index(len(vectors), 32, 1e9, exact_max=1000)
    index = index_build.build_index(vectors, plan)
    tuned = index_build.tune(index, vectors, target_recall=0.999, genuine_cosine=0.8, queries=1000)
    assert tuned["search"]["nprobe"] == plan.nlist and not tuned["recall_at_1"]["meets_target"]
    assert tuned["recall_at_1"]["lower_bound"] < 0.999


@pytest.mark.parametrize(("found", "n", "bound", "allowed"), [(1000, 1000, 0.997009, -1), (2995, 2995, 0.999000, 0),
                                                              (4744, 4745, 0.999001, 1), (997, 1000, 0.992265, -1)])
def test_the_bound_is_clopper_pearsons(found, n, bound, allowed):
    """Zero misses of n: 0.05 ** (1 / n); with misses, the binomial tail."""
    assert index_build.recall_lower_bound(found, n) == pytest.approx(bound, abs=2e-6)
    assert index_build.allowed_misses(n, 0.999) == allowed


def test_every_allowed_miss_count_has_its_bound_at_the_target():
    for n in (2995, 5000, 8000):
        allowed = index_build.allowed_misses(n, 0.999)
        assert index_build.recall_lower_bound(n - allowed, n) >= 0.999 > index_build.recall_lower_bound(
            n - allowed - 1, n)


def test_the_device_decodes_sq8_rows_as_faiss_does():
    """`edge_app.shards.Reranked.decode` redoes Faiss's decode so that a device needs no trainer
    code: pinned to the codec enrollment encodes with."""
    vectors = clustered(600, 32, 4)
    index = index_build.build_index(vectors, index_build.plan_index(len(vectors), 32, 20.0, exact_max=100))
    assert index_build.index_kind(index) == "ivf_pq_sq8"
    codec = index_build.sq8_codec(32, np.concatenate([index.vmin, index.vdiff]))
    # the same values up to float32 rounding (Faiss multiplies in another order); a code step is 1/255 of a range
    assert np.abs(index.decode(index.codes()) - codec.decode(index.codes())).max() <= 1e-6
    assert np.array_equal(codec.compute_codes(vectors), index.codes())


def test_the_tuned_search_decides_as_a_full_search_at_every_nprobe_would():
    """Tuning stops a candidate nprobe's search at its first miss too many and reads recall and
    the score error from the chosen nprobe's own search: the decision and the figures must be
    those of searching every query at every nprobe in turn."""
    vectors = clustered(8000, 64, 1)
    labels = np.arange(len(vectors)) // 2  # two rows a label: found by label
    index = index_build.build_index(vectors, index_build.plan_index(len(vectors), 64, 1e9, exact_max=1000))
    tuned = index_build.tune(index, vectors, target_recall=0.999, genuine_cosine=0.8, seed=3, labels=labels)

    queries, _ = index_build.genuine_like(vectors, index_build.tuning_queries(0.999), 0.8, np.random.default_rng(3))
    truth = labels[index_build.exact_top1(vectors, queries)]
    ivf = faiss.extract_index_ivf(index)
    for nprobe in (p for p in index_build.NPROBES if p < ivf.nlist):
        ivf.nprobe = nprobe
        found = int(np.sum(labels[index.search(queries, 1)[1][:, 0]] == truth))
        if index_build.recall_lower_bound(found, len(queries)) >= 0.999:
            break
    assert index_build.recall_lower_bound(found, len(queries)) >= 0.999  # one below every cell meets it
    assert tuned["search"]["nprobe"] == nprobe
    assert tuned["recall_at_1"]["genuine_like"] == found / len(queries)
    assert tuned["recall_at_1"]["lower_bound"] == round(index_build.recall_lower_bound(found, len(queries)), 6)
    assert tuned["score_error"] == index_build.score_error(index, vectors, queries)
