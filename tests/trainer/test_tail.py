"""The impostor score tail (`trainer.tail`) on scores whose true tail is known: the per-query
false-accept rate at the threshold it sets is the one asked, within the factor its module states,
and the threshold rises with the labels a query meets."""

import math

import numpy as np
import pytest

from edge_app.errors import PufError
from trainer.metrics import _betainc
from trainer.tail import MIN_PAIRS, Tail, pair_far_for, query_far

PAIRS = 200_000
LABELS = 100  # per shard


def _normal(rng):
    return rng.normal(0.3, 0.08, PAIRS), lambda t: 0.5 * math.erfc((t - 0.3) / 0.08 / math.sqrt(2))


def _logistic(rng):
    return rng.logistic(0.2, 0.05, PAIRS), lambda t: 1 / (1 + math.exp((t - 0.2) / 0.05))


def _beta(rng):  # a bounded tail, as cosine scores are: 2 Beta(8, 12) - 1 ends at 1
    return 2 * rng.beta(8, 12, PAIRS) - 1, lambda t: 1 - _betainc(8, 12, (t + 1) / 2)


@pytest.mark.parametrize("dist", [_normal, _logistic, _beta])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_per_query_far_at_the_threshold_is_the_one_asked_within_the_stated_factor(dist, seed):
    scores, survival = dist(np.random.default_rng(seed))
    tail = Tail.fit(scores)
    assert tail.k == 4000 and tail.pairs == PAIRS
    for target in (1e-3, 1e-4, 1e-5):  # per query, at 100 labels: per comparison 1e-5 .. 1e-7 (1 / (50 N))
        pair = pair_far_for(target, LABELS)
        assert pair >= 1 / (50 * PAIRS)
        t, method = tail.threshold(pair)
        assert method == ("empirical" if pair >= tail.fit_share else "generalized Pareto")
        truth = query_far(survival(t), LABELS)
        assert target / 20 <= truth <= 5 * target, (target, truth)  # measured: 0.06 - 2.9 times
        # the model's own estimate at its threshold is the target
        assert query_far(tail.pair_far(t), LABELS) == pytest.approx(target, rel=1e-6)


def test_the_threshold_rises_with_the_labels_a_query_meets():
    tail = Tail.fit(_normal(np.random.default_rng(3))[0])
    thresholds = [tail.threshold(pair_far_for(1e-5, n))[0] for n in (1, 10, 100, 1_000, 10_000)]
    assert all(a < b for a, b in zip(thresholds, thresholds[1:], strict=False))
    # and p(t) falls with t across the join of the empirical part and the fit
    grid = np.linspace(tail.u - 0.05, tail.u + 0.3, 200)
    far = [tail.pair_far(t) for t in grid]
    assert all(a >= b for a, b in zip(far, far[1:], strict=False))
    assert tail.pair_far(tail.u) == pytest.approx(tail.fit_share, rel=1e-3)


def test_the_empirical_part_is_exact_where_there_are_enough_pairs():
    scores = np.random.default_rng(4).normal(0, 1, 10_000)
    tail = Tail.fit(scores)
    t, method = tail.threshold(0.1)
    assert method == "empirical" and np.sum(scores > t) <= 1000 and np.sum(scores >= t) > 1000


def test_the_per_query_far_of_one_label_is_the_per_comparison_one():
    assert query_far(1e-4, 1) == pytest.approx(1e-4)
    assert query_far(1e-6, 1000) == pytest.approx(1 - (1 - 1e-6) ** 1000)
    assert pair_far_for(query_far(1e-7, 944), 944) == pytest.approx(1e-7)


@pytest.mark.parametrize("scores, words", [
    (np.zeros(MIN_PAIRS - 1), "at least"),
    (np.full(MIN_PAIRS, np.nan), "finite"),
    (np.full(MIN_PAIRS, 0.3), "flat"),
])
def test_too_few_or_broken_scores_are_refused_with_a_message(scores, words):
    with pytest.raises(PufError, match=words):
        Tail.fit(scores)


@pytest.mark.parametrize("q, n", [(0, 10), (1, 10), (-1e-5, 10), (1e-5, 0)])
def test_a_per_query_far_outside_0_1_or_an_empty_shard_is_refused(q, n):
    with pytest.raises(PufError):
        pair_far_for(q, n)


def test_same_pattern_pairs_and_the_threshold_they_set_at_a_shard_size():
    from trainer.metrics import pair_scores
    from trainer.model_accuracy import at_scale

    enroll = np.eye(4, dtype=np.float32)
    query = np.eye(4, dtype=np.float32)[[0, 1, 2]] * 0.8 + 0.1
    genuine, impostor = pair_scores(enroll, np.arange(4), query, np.arange(3),
                                    np.array([0, 0, 1, 1]), np.array([0, 0, 1]))
    assert len(genuine) == 3 and len(impostor) == 3  # query 0 vs 1, 1 vs 0, 2 vs 3
    np.testing.assert_allclose(impostor, [0.1, 0.1, 0.1])

    rng = np.random.default_rng(4)
    same_pattern = rng.normal(0.3, 0.08, 100_000)
    genuine = rng.normal(0.85, 0.03, 3_000)
    small, large = at_scale(genuine, same_pattern, 10), at_scale(genuine, same_pattern, 1000)
    for report in (small, large):
        thresholds = [row["threshold"] for row in report["tar_at_query_far"]]
        assert thresholds == sorted(thresholds)  # a rarer false accept needs a higher threshold
        assert report["impostor_pairs"] == 100_000
    for a, b in zip(small["tar_at_query_far"], large["tar_at_query_far"], strict=True):
        assert b["threshold"] > a["threshold"]  # more labels a shard, higher threshold
        assert b["pair_far"] < a["pair_far"] and b["beyond_measured"] > a["beyond_measured"]
    row = large["tar_at_query_far"][0]  # per-query 1e-3 at 1,000 labels: about 1e-6 a comparison
    assert row["method"] == "generalized Pareto" and 4.5 < (row["threshold"] - 0.3) / 0.08 < 5.5
    assert row["tar"] == pytest.approx(float(np.mean(genuine > row["threshold"])))
