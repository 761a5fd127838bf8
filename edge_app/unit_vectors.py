"""Synthetic fingerprints for measuring search (time, memory, recall against exact search),
never accuracy: random unit vectors, and vectors moved to a chosen cosine from given ones, as a
re-capture of an enrolled label would be. One owner, for the device's bench and the factory's
index tuning alike."""

from __future__ import annotations

import math

import numpy as np


def random_unit(count: int, d: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((count, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def moved_to_cosine(base: np.ndarray, cosine: float, rng: np.random.Generator,
                    direction: np.ndarray | None = None) -> np.ndarray:
    """Each unit row of `base` moved to `cosine` from itself: towards the part of its row of
    `direction` orthogonal to it, or, without `direction`, in a random direction."""
    noise = rng.standard_normal(base.shape).astype(np.float32) if direction is None else direction.astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base  # orthogonal to the vector
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return np.ascontiguousarray(cosine * base + math.sqrt(1.0 - cosine**2) * noise, np.float32)
