"""The upper tail of impostor comparison scores, and the false-accept chance per query it implies.

A counterfeit is accepted when its best score clears the threshold, and its best score is the
maximum over every label of the shard the device searches (n labels of its pattern). With
p(t) the share of impostor comparisons scoring >= t, a query's false-accept chance is

    P(false accept per query) = 1 - (1 - p(t))^n      (`query_far`)

so the threshold for a per-query FAR q at n labels is the one where p(t) = 1 - (1 - q)^(1/n)
(`pair_far_for`): about q / n, far below what held-out comparisons measure directly.

`Tail` estimates p(t) from the measured impostor scores: **empirically** (the share above t)
where at least the top `k` scores lie above t, and above that, by **peaks over threshold**: a
generalized Pareto distribution fitted by maximum likelihood to the excesses of the top k
scores over the (k+1)-th, u (k = 2% of the comparisons, at least 50 and at most 5,000), so

    p(t) = k / N * (1 + xi (t - u) / sigma)^(-1 / xi)      for t > u.

The two meet at u (p(u) = k / N), so p(t) falls with t everywhere and the threshold rises with n.
Cosine scores are bounded, so the fitted shape is usually negative (a finite end point), and a
fit over the top 2% tends to make it more negative than the far tail is (the normal
distribution's tail converges slowly): extrapolated, that would under-state p(t). So xi is the
fitted shape's one-sided 95% upper confidence bound (its maximum-likelihood standard error is
(1 + xi) / sqrt(k)), which errs towards a higher threshold. On scores of known distributions
(normal, logistic, beta; 200,000 comparisons, three seeds; tests/trainer/test_tail.py) the true
per-query FAR at the threshold set for a target lies between 0.06 and 2.9 times the target, down
to a per-comparison p of 1 / (50 N): the test holds it within 1/20 - 5 times. A threshold is not
written further than `MAX_EXTRAPOLATION` below 1 / N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_app.errors import PufError

TAIL_SHARE, TAIL_MIN, TAIL_MAX = 0.02, 50, 5000  # the top k scores the tail is fitted to
MIN_PAIRS = 4 * TAIL_MIN  # the fit's scores are at most a quarter of all
MAX_EXTRAPOLATION = 100  # a written threshold's per-comparison FAR is at least 1 / (100 N)
UPPER_Z = 1.645  # the shape used: its one-sided 95% upper confidence bound


def query_far(pair_far: float, labels: int) -> float:
    """The chance that the best of `labels` impostor comparisons, each above the threshold
    with chance `pair_far`, clears it: 1 - (1 - p)^n."""
    return float(-math.expm1(labels * math.log1p(-pair_far))) if pair_far < 1 else 1.0


def pair_far_for(query_far_target: float, labels: int) -> float:
    """The per-comparison FAR p with 1 - (1 - p)^labels = the per-query FAR asked."""
    if not 0 < query_far_target < 1:
        raise PufError(f"the per-query FAR must lie between 0 and 1, got {query_far_target}")
    if labels < 1:
        raise PufError(f"a shard holds at least one label, got {labels}")
    return float(-math.expm1(math.log1p(-query_far_target) / labels))


@dataclass(frozen=True)
class Tail:
    """p(t), the share of impostor comparisons scoring >= t (see the module)."""

    pairs: int  # N, the impostor comparisons
    k: int  # the top k scores the generalized Pareto distribution is fitted to
    u: float  # the (k+1)-th highest score: the fit's threshold
    xi: float  # shape used: the fitted one's 95% upper bound
    sigma: float  # scale
    xi_fit: float  # the maximum-likelihood shape
    scores: np.ndarray = field(repr=False, compare=False)  # all N, ascending

    @classmethod
    def fit(cls, impostor: np.ndarray) -> Tail:
        scores = np.asarray(impostor, np.float64).ravel()
        if len(scores) < MIN_PAIRS or not np.all(np.isfinite(scores)):
            raise PufError(f"the impostor score tail needs at least {MIN_PAIRS:,} finite impostor comparisons, "
                           f"got {len(scores):,}: give more captures of never-enrolled labels")
        scores = np.sort(scores)
        k = int(min(TAIL_MAX, max(TAIL_MIN, round(TAIL_SHARE * len(scores)))))
        u = float(scores[-k - 1])
        xi, sigma = fit_gpd(scores[-k:] - u)
        return cls(len(scores), k, u, xi + UPPER_Z * (1 + xi) / math.sqrt(k), sigma, xi, scores)

    @property
    def fit_share(self) -> float:
        return self.k / self.pairs

    def pair_far(self, t: float) -> float:
        """The share of impostor comparisons scoring >= t (estimated above u)."""
        if t <= self.u:
            return float(self.pairs - np.searchsorted(self.scores, t, side="left")) / self.pairs
        y = t - self.u
        if abs(self.xi) < 1e-9:
            return self.fit_share * math.exp(-y / self.sigma)
        base = 1 + self.xi * y / self.sigma
        return self.fit_share * base ** (-1 / self.xi) if base > 0 else 0.0

    def threshold(self, pair_far: float) -> tuple[float, str]:
        """The score a threshold for the per-comparison FAR `pair_far` must lie above (the last
        one rejected), and how it was found: 'empirical' (the ceil(pN)-th highest score, so at
        most floor(pN) lie above) or 'generalized Pareto'."""
        if pair_far >= self.fit_share:
            return float(self.scores[-1 - min(int(pair_far * self.pairs), self.pairs - 1)]), "empirical"
        ratio = pair_far / self.fit_share
        y = -self.sigma * math.log(ratio) if abs(self.xi) < 1e-9 else self.sigma / self.xi * (ratio ** -self.xi - 1)
        return self.u + y, "generalized Pareto"

    def to_dict(self) -> dict:
        return {"pairs": self.pairs,
                "fit": "empirical below the fit range; above it a generalized Pareto distribution, maximum "
                       "likelihood on the top scores' excesses (peaks over threshold), shape at its 95% upper bound",
                "fit_scores": self.k, "fit_range": [round(self.u, 6), round(float(self.scores[-1]), 6)],
                "shape": round(self.xi, 6), "shape_fitted": round(self.xi_fit, 6), "scale": round(self.sigma, 6)}


def fit_gpd(excesses: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood shape and scale of a generalized Pareto distribution (Grimshaw's
    profile: with theta = xi / sigma, xi(theta) = mean(log(1 + theta y)) and the log-likelihood
    is -k (log(xi / theta) + xi + 1); theta = 0 is the exponential). The shape is held >= -1,
    below which the likelihood has no maximum."""
    y = np.asarray(excesses, np.float64)
    y = y[y > 0]
    if len(y) < 2:
        raise PufError("the impostor score tail is flat (its top scores are all equal): too few distinct "
                       "impostor comparisons to fit it")
    mean, most = float(y.mean()), float(y.max())

    def shape(theta: float) -> float:
        return float(np.mean(np.log1p(theta * y)))

    def loglik(theta: float) -> float:
        if abs(theta) < 1e-12 / most:
            return -(math.log(mean) + 1)
        xi = shape(theta)
        if xi < -1 or xi / theta <= 0:
            return -math.inf
        return -(math.log(xi / theta) + xi + 1)

    lowest = -1 / most
    grid = np.concatenate([lowest * (1 - np.logspace(-8, -0.01, 60)), [0.0], np.logspace(-3, 3, 60) / mean])
    values = np.array([loglik(t) for t in grid])
    i = int(np.argmax(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(80):  # golden-section search between the best grid point's neighbours
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if loglik(a) >= loglik(b):
            hi = b
        else:
            lo = a
    theta = (lo + hi) / 2
    if loglik(theta) < values[i]:
        theta = float(grid[i])
    if abs(theta) < 1e-12 / most:
        return 0.0, mean
    xi = shape(theta)
    return xi, xi / theta
