"""Deterministic verdicts and crops for the journal tests (and the child processes they kill
mid-write)."""

from __future__ import annotations

import numpy as np

from edge_app.verify import Verdict


def verdict(i: int) -> Verdict:
    """The i-th of a deterministic series of verdicts."""
    kind = ("genuine", "counterfeit", "unreadable")[i % 3]
    return Verdict(kind, f"V1-{i // 100:04d}-{i % 100:02d}" if kind == "genuine" else None,
                   None if kind == "unreadable" else round(0.5 + (i % 50) / 100, 4), 0.62,
                   None if kind == "unreadable" else f"p{i % 7}", 0.97, {"segment": 1.5, "model": 2.0, "total": 4.25},
                   f"reason {i}", f"shot_{i}.png#0")


def crop(i: int, grey: bool = False) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (96, 96) if grey else (96, 96, 3), dtype=np.uint8)
