"""Score normalisation at the bench's scale: would a rule other than the best score lower false
accepts at equal genuine acceptance?

Each genuine and counterfeit photo is cut and searched as the device does (its predicted
pattern's shards, the best of the crop's turns), and its best `COHORT + 1` distinct labels are
scored three ways:

* ``best``: s1, the best label's score (what the device decides on);
* ``margin``: s1 - s2, the best minus the second-best label;
* ``cohort``: (s1 - mean) / SD of the next `COHORT` labels' scores: the query's own cohort of
  impostor scores, its top part as adaptive score normalisation takes it (the rest of a shard
  of a thousand labels scores far lower and says little about the tail that decides).

A genuine photo counts only when its best label is its own. Each rule's threshold is the one
that accepts a given share of those genuine photos (100%; 99.9%), and the counterfeits it lets
through are counted, and estimated beyond the photos by the tail of the counterfeits' rule
scores (`trainer.tail`, as the bench's counterfeit tail). A rule is worth keeping only if it
lets fewer through at equal genuine acceptance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from edge_app.errors import PufError
from trainer.harness.bench import queries
from trainer.tail import Tail

RULES = ("best", "margin", "cohort")
COHORT = 20  # impostor labels after the best one
GENUINE_SHARES = (1.0, 0.999)


def rule_scores(top: np.ndarray) -> dict[str, float]:
    """A query's score under each rule, from its best distinct labels' scores (descending)."""
    s1, rest = float(top[0]), np.asarray(top[1:], np.float64)
    return {"best": s1, "margin": s1 - float(rest[0]),
            "cohort": (s1 - float(rest.mean())) / max(float(rest.std()), 1e-6)}


def score_photos(verifier, photos: list[queries.Photo], augmented: int, desc: str
                 ) -> tuple[dict[str, list[float]], int]:
    """Each readable photo's rule scores (genuine photos only when their best label is their own),
    and how many distinct labels the searches found (median)."""
    scores: dict[str, list[float]] = {rule: [] for rule in RULES}
    found = []
    for photo in tqdm(photos, desc=desc, unit="photo", smoothing=0.05):
        cut = queries.device_crop(verifier, queries.read_photo(photo), photo.corners_px)
        if cut is None:
            continue
        candidates = queries.top_candidates(verifier, *cut, COHORT + 1, augmented)
        found.append(len(candidates))
        if len(candidates) < 3 or (photo.kind == "genuine" and candidates[0][0] != photo.label_id):
            continue
        for rule, value in rule_scores(np.array([score for _, score in candidates])).items():
            scores[rule].append(value)
    return scores, int(np.median(found)) if found else 0


def compare(genuine: dict[str, list[float]], counterfeit: dict[str, list[float]]) -> dict:
    """Per rule, at the thresholds that accept each share of the genuine photos: counterfeits over
    them, and the tail's estimate a query; and the gap between the lowest genuine and the highest
    counterfeit score in counterfeit standard deviations (comparable across the rules' units)."""
    out = {}
    for rule in RULES:
        mine, theirs = np.asarray(genuine[rule]), np.asarray(counterfeit[rule])
        try:
            tail = Tail.fit(theirs)
        except PufError:  # too few photos for a tail
            tail = None
        row: dict[str, Any] = {"gap_in_counterfeit_sd": round(float((mine.min() - theirs.max()) / theirs.std()), 3),
                               "at": []}
        for share in GENUINE_SHARES:
            threshold = float(np.quantile(mine, 1 - share, method="lower"))
            row["at"].append({"genuine_share": share, "threshold": round(threshold, 6),
                              "counterfeits_over": int((theirs >= threshold).sum()),
                              "tail_estimate": float(tail.pair_far(threshold)) if tail else None})
        out[rule] = row
    return out


def run(verifier, photos: dict[str, list[queries.Photo]], count: int, augmented: int) -> dict:
    """The rules on the first `count` genuine and counterfeit photos."""
    genuine, found_g = score_photos(verifier, photos["genuine"][:count], augmented, "normalisation: genuine")
    counterfeit, found_c = score_photos(verifier, photos["counterfeit"][:count], augmented,
                                        "normalisation: counterfeit")
    if min(len(genuine["best"]), len(counterfeit["best"])) < 2:
        return {"genuine": len(genuine["best"]), "counterfeit": len(counterfeit["best"]), "rules": None}
    return {"genuine": len(genuine["best"]), "counterfeit": len(counterfeit["best"]), "cohort": COHORT,
            "labels_found_median": min(found_g, found_c), "rules": compare(genuine, counterfeit)}


def table(result: dict) -> list[str]:
    """The rules side by side, for the report."""
    if not result["rules"]:
        return [f"Score normalisation: too few photos whose shard holds three labels to compare the rules "
                f"({result['genuine']} genuine, {result['counterfeit']} counterfeit)."]
    shares = " | ".join(f"{100 * s:g}% genuine: threshold, counterfeits over, tail estimate" for s in GENUINE_SHARES)
    lines = [f"Score normalisation (`trainer/harness/bench/normalisation.py`): {result['genuine']:,} genuine photos "
             f"whose best label is their own and {result['counterfeit']:,} counterfeit photos, each rule's threshold "
             f"set to accept the same genuine photos; the cohort is the next {result['cohort']} labels of the "
             f"query's shard (the searches found {result['labels_found_median']} distinct labels, median):", "",
             f"| rule | {shares} | lowest genuine minus highest counterfeit, in counterfeit SDs |",
             "| --- |" + " --- |" * (len(GENUINE_SHARES) + 1)]
    for rule, row in result["rules"].items():
        cells = [f"{a['threshold']:.4f}, {a['counterfeits_over']:,}, "
                 f"{'-' if a['tail_estimate'] is None else format(a['tail_estimate'], '.1e')}" for a in row["at"]]
        lines.append(f"| {rule} | {' | '.join(cells)} | {row['gap_in_counterfeit_sd']:+.2f} |")
    return lines
