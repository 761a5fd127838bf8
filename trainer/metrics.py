"""Verification figures the way the field reports them: TAR at a fixed FAR, and EER.

Scores are cosine similarities; a pair is accepted when its score is above the
threshold. A FAR below 1 / (number of impostor pairs) cannot be measured: those rows
say so (`resolved: false`) instead of quoting a number the data cannot support.
"""

from __future__ import annotations

import math

import numpy as np

# The false accept rates every verification report gives the TAR at (puf evaluate, the export's
# model accuracy): the field's usual points, down to the 1e-5 a large enrolment needs.
REPORTED_FARS = (1e-3, 1e-4, 1e-5)
# The project's goals at the deployed size: counterfeits accepted at most 1 in 100,000 queries
# (99.999% rejected), and genuine photos accepted at least 99.9% of the readable ones.
QUERY_FAR_GOAL = 1e-5
GENUINE_GOAL = 0.999


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of `a` with the same row of `b` (two models' embeddings of the same inputs)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> dict:
    """The threshold that lets at most `far` of impostor pairs through, and the share
    of genuine pairs above it."""
    genuine = np.asarray(genuine, np.float64)
    impostor = np.sort(np.asarray(impostor, np.float64))[::-1]
    k = int(np.floor(far * len(impostor)))
    threshold = float(impostor[min(k, len(impostor) - 1)])
    return {
        "far": far,
        "threshold": threshold,
        "tar": float(np.mean(genuine > threshold)),
        "measured_far": float(np.mean(impostor > threshold)),
        "resolved": far * len(impostor) >= 1.0,
    }


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold."""
    genuine = np.sort(np.asarray(genuine, np.float64))
    impostor = np.sort(np.asarray(impostor, np.float64))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    frr = np.searchsorted(genuine, thresholds, side="right") / len(genuine)  # genuine <= t
    far = 1.0 - np.searchsorted(impostor, thresholds, side="right") / len(impostor)  # imp > t
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2), float(thresholds[i])


def pair_scores(enroll: np.ndarray, enroll_ids: np.ndarray, query: np.ndarray,
                query_ids: np.ndarray, enroll_patterns: np.ndarray | None = None,
                query_patterns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine scores of every query against every enrolled label
    (embeddings L2-normalised; one enrollment per label). With the patterns given, the
    impostor pairs are only those of a query and a label of the same pattern."""
    enroll_ids = np.asarray(enroll_ids)
    query_ids = np.asarray(query_ids)
    if len(np.unique(enroll_ids)) != len(enroll_ids):
        raise ValueError("one enrollment per label expected")
    sims = np.asarray(query, np.float32) @ np.asarray(enroll, np.float32).T
    same = query_ids[:, None] == enroll_ids[None, :]
    impostor = ~same
    if enroll_patterns is not None and query_patterns is not None:
        impostor &= np.asarray(query_patterns)[:, None] == np.asarray(enroll_patterns)[None, :]
    return sims[same], sims[impostor]


def verification_report(genuine: np.ndarray, impostor: np.ndarray,
                        fars: tuple[float, ...] = REPORTED_FARS) -> dict:
    rate, threshold = eer(genuine, impostor)
    return {
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "eer": rate,
        "eer_threshold": threshold,
        "tar_at_far": [tar_at_far(genuine, impostor, far) for far in fars],
        "genuine_mean": float(np.mean(genuine)),
        "genuine_min": float(np.min(genuine)),
        "impostor_mean": float(np.mean(impostor)),
        "impostor_max": float(np.max(impostor)),
    }


def rate_bounds(errors: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) one-sided bounds on an error rate seen `errors` times in
    `trials`: the true rate is at least `lower` with `confidence`, and at most `upper` with
    `confidence`. Zero errors in n trials bound the rate below 1 - (1 - confidence)^(1/n),
    about 3/n at 95%: the figure a FAR or FRR claim from few pairs must carry."""
    if trials <= 0 or not 0 <= errors <= trials:
        raise ValueError(f"need 0 <= errors <= trials and trials > 0, got {errors} of {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    alpha = 1.0 - confidence
    # P(X <= k) for X ~ Binomial(n, p) is I_{1-p}(n - k, k + 1), falling in p
    upper = 1.0 if errors == trials else _solve(lambda p: _betainc(trials - errors, errors + 1, 1 - p), alpha)
    lower = 0.0 if errors == 0 else _solve(lambda p: _betainc(trials - errors + 1, errors, 1 - p), 1 - alpha)
    return lower, upper


def confident_threshold(impostor: np.ndarray, far: float, confidence: float = 0.95) -> float | None:
    """The lowest threshold whose false accepts among `impostor` scores (those above it) still
    bound the FAR below `far` with `confidence`; None when even zero false accepts cannot (too
    few comparisons: fewer than `trials_needed(far)`)."""
    impostor = np.sort(np.asarray(impostor, np.float64))[::-1]
    n = len(impostor)
    if n < trials_needed(far, confidence):
        return None
    lo, hi = 0, n - 1  # the upper bound grows with the false accepts k: the largest k within far
    while lo < hi:
        k = (lo + hi + 1) // 2
        if rate_bounds(k, n, confidence)[1] <= far:
            lo = k
        else:
            hi = k - 1
    return float(impostor[lo])


def device_threshold(last_rejected: float) -> float:
    """The threshold to write for a device that accepts a score >= it: just above the last
    score that must be rejected, at the manifest's 6 decimals (so no rounding lets it in)."""
    return math.floor(last_rejected * 1e6 + 1) / 1e6


def trials_needed(rate: float, confidence: float = 0.95) -> int:
    """How many trials with no error bound an error rate below `rate` with `confidence`."""
    return int(math.ceil(math.log(1.0 - confidence) / math.log1p(-rate)))


def _solve(falling, target: float) -> float:
    """The p in (0, 1) where a falling function of p crosses `target` (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if falling(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a
