"""Deterministic verdicts and crops for the journal tests (and the child processes they kill
mid-write), and devices' journals as the central registry's tests need them."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import numpy as np

from edge_app.device_key import device_key, key_paths
from edge_app.journal import TIME_FORMAT, Journal
from edge_app.verdicts import Kind, Reason
from edge_app.verify import Verdict


def verdict(i: int) -> Verdict:
    """The i-th of a deterministic series of verdicts."""
    kind = ("genuine", "counterfeit", "unreadable")[i % 3]
    return Verdict(verdict=Kind(kind), label_id=f"V1-{i // 100:04d}-{i % 100:02d}" if kind == "genuine" else None,
                   score=None if kind == "unreadable" else round(0.5 + (i % 50) / 100, 4), threshold=0.62,
                   pattern=None if kind == "unreadable" else f"p{i % 7}", pattern_confidence=0.97,
                   timings_ms={"segment": 1.5, "model": 2.0, "total": 4.25},
                   why=Reason.BAD_IMAGE.of(problem=f"reason {i}"),  # any words: the journal keeps them as given
                   source=f"shot_{i}.png#0")


def crop(i: int, grey: bool = False) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (96, 96) if grey else (96, 96, 3), dtype=np.uint8)


def check(label: str | None, kind: str = "genuine") -> Verdict:
    return Verdict(verdict=Kind(kind), label_id=label, score=0.9 if label else 0.1, threshold=0.6, pattern="p0",
                   pattern_confidence=0.99, timings_ms={"total": 3.0}, why=Reason.BAD_IMAGE.of(problem=""),
                   source="shot.png#0")


def register(central, journal: Journal) -> None:
    """Register the device's public key (made on its first export, or now) with `central`."""
    device_key(journal.path)
    central.add_device(journal.device_id, key_paths(journal.path)[1])


def set_time(journal: Journal, entry_id: int, when: datetime) -> None:
    """A check's time as the device recorded it (in its journal, before the export signs it)."""
    db = sqlite3.connect(journal.path)
    with db:
        db.execute("UPDATE verifications SET time = ? WHERE id = ?", (when.strftime(TIME_FORMAT), entry_id))
    db.close()
