"""Verification figures the way the field reports them: TAR at a fixed FAR, and EER.

Scores are cosine similarities; a pair is accepted when its score is above the
threshold. A FAR below 1 / (number of impostor pairs) cannot be measured: those rows
say so (`resolved: false`) instead of quoting a number the data cannot support.
"""

from __future__ import annotations

import numpy as np


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
                query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor cosine scores of every query against every enrolled label
    (embeddings L2-normalised; one enrollment per label)."""
    enroll_ids = np.asarray(enroll_ids)
    query_ids = np.asarray(query_ids)
    if len(np.unique(enroll_ids)) != len(enroll_ids):
        raise ValueError("one enrollment per label expected")
    sims = np.asarray(query, np.float32) @ np.asarray(enroll, np.float32).T
    same = query_ids[:, None] == enroll_ids[None, :]
    return sims[same], sims[~same]


def verification_report(genuine: np.ndarray, impostor: np.ndarray,
                        fars: tuple[float, ...] = (1e-3, 1e-4, 1e-5)) -> dict:
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
