"""Each photo's best score by exact search: what its fingerprint scores, whatever the index.

The device's score is its shard index's: an IVF index may miss a photo's nearest label (a lower
score), and its codes round scores (a little higher or lower). Which index a shard gets depends
on its size and the memory budget, so a threshold calibrated on one index's scores holds for that
index only (tools/results/bench_paper_scale_distinct_100copies_small_memory.md: the same photos'
best counterfeit scores moved by up to 0.108 between two kinds). Exact search over the float
vectors an index codes gives the score no index exceeds beyond its code rounding, which
enrollment's score-error guard bounds (`trainer.index_build.score_error`): a threshold calibrated
on it holds for every kind of shard.

Each photo is cut and run through the model as the device does (`queries.device_crop`, the
verifier's own `lookup`: its crop turns and the patterns it searches), and its best score is the
highest inner product with any enrolled vector of those patterns, over the crop's turns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from trainer.harness.bench import queries


def best_scores(verifier, photos: dict[str, list[queries.Photo]], limit: int,
                vectors_of: Callable[[str], tuple[np.ndarray, list[str]]]) -> dict[str, list[float | None]]:
    """The exact best score of the first `limit` photos of each kind, in photo order (None where
    the device reads no label, or searches no enrolled pattern). `vectors_of(pattern)` gives the
    float vectors of that pattern's shard and their label ids (`database.pattern_vectors`)."""
    import faiss

    wanted: dict[str, list[tuple[str, int, np.ndarray]]] = {}
    scores: dict[str, list[float | None]] = {}
    for kind in queries.KINDS:
        taken = photos[kind][:limit]
        scores[kind] = [None] * len(taken)
        for n, photo in enumerate(tqdm(taken, desc=f"exact search: {kind} photos, cut and model", unit="photo",
                                       smoothing=0.05)):
            cut = queries.device_crop(verifier, queries.read_photo(photo), photo.corners_px)
            if cut is None:
                continue
            crops, glyph = cut
            lookups, _, _ = verifier.lookup(crops, [glyph] * len(crops))
            for lookup in lookups:
                for pattern in lookup.searched:
                    wanted.setdefault(pattern, []).append((kind, n, lookup.embedding))
    for pattern, items in tqdm(wanted.items(), desc="exact search: shards", unit="shard"):
        vectors = vectors_of(pattern)[0]
        if not len(vectors):
            continue
        found = faiss.knn(np.stack([e for _, _, e in items]).astype(np.float32), vectors, 1,
                          faiss.METRIC_INNER_PRODUCT)[0][:, 0]
        for (kind, n, _), score in zip(items, found, strict=True):
            before = scores[kind][n]
            scores[kind][n] = float(score) if before is None else max(before, float(score))
    return scores
