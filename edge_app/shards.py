"""Per-pattern Faiss shards: one index per pattern class, and the label ids its rows map to.

In a bundle::

    shards/p07.faiss      Faiss index of pattern class 7 (inner product on L2-normalised
                          fingerprints); row i of the index is vector i
    shards/p07.ids.npy    (vectors,) fixed-width bytes: the label id of every row (a label
                          enrolled with several rotations or augmented copies has several)

and in the manifest, ``"shards"`` (`edge_app.bundle_format.Shards`)::

    {"format": 1, "metric": "inner_product", "embedding_dim": 512, "model_format": "int8",
     "vectors": ..., "labels": ..., "memory_budget_mb": ...,
     "enrollments": [{"time": ..., "source": ..., "labels": ..., "vectors": ..., "rotations": ...,
                      "augmented": ..., "batches": [...]}, ...],
     "classes": {"<pattern>": {"index": "shards/p07.faiss", "ids": "shards/p07.ids.npy",
                               "vectors": n, "labels": m, "kind": "ivf_sq4",
                               "factory": "IVF1024,SQ4", "action": "built", "search": {"nprobe": 8},
                               "recall_at_1": {...}, "bytes": ...}}}

Shards are memory-mapped (``IO_FLAG_MMAP_IFC``: Faiss maps flat codes and inverted lists
from the file instead of reading them), as are the id maps, so opening a bundle of
millions of labels takes milliseconds and its pages are read on demand and shared.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.bundle_format import ShardEntry, Shards
from edge_app.errors import PufError, require_module


def ivf_nlist(n: int) -> int:
    """Cells for an IVF of n vectors: about 4 sqrt(n), a power of two, with >= 39 training
    vectors a cell (Faiss's k-means rule of thumb). Enrollment plans shards with it
    (`trainer.index_build`), `puf device bench` its synthetic shard."""
    target = 2 ** round(math.log2(max(16.0, 4.0 * math.sqrt(n))))
    return int(max(16, min(target, 2 ** int(math.log2(max(n // 39, 16))))))


def set_search_params(index, params: dict) -> None:
    """Apply tuned search parameters (an IVF's nprobe) to an index."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and "nprobe" in params:
        ivf.nprobe = int(params["nprobe"])


def read_index(path: Path, mmap: bool = True):
    """A Faiss index from a file, memory-mapped when `mmap` and Faiss allows it."""
    require_module("faiss", "device")
    import faiss

    if mmap:
        try:
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            pass  # an index type Faiss cannot map: read it
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise PufError(f"cannot read the Faiss index {path.name}: {str(error).splitlines()[0]}") from None


@dataclass
class Match:
    label_id: str
    pattern: str
    score: float  # cosine similarity of the query and the label's nearest enrolled vector


class Shard:
    """One pattern class's index and id map."""

    def __init__(self, pattern: str, index, ids: np.ndarray, entry: ShardEntry) -> None:
        if index.ntotal != len(ids):
            raise PufError(f"shard {pattern!r}: the index holds {index.ntotal} vectors but its id map "
                           f"{len(ids)}")
        self.pattern = pattern
        self.index = index
        self.ids = ids
        self.entry = entry
        set_search_params(index, entry.search or {})

    @classmethod
    def load(cls, bundle: Path, pattern: str, entry: ShardEntry, mmap: bool = True) -> Shard:
        bundle = Path(bundle)
        index = read_index(bundle / entry.index, mmap)
        try:
            ids = np.load(bundle / entry.ids, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise PufError(f"cannot read the id map {entry.ids}: {error}") from None
        if ids.ndim != 1 or ids.dtype.kind != "S":
            raise PufError(f"{entry.ids} is not an id map (1-d byte strings), got {ids.dtype} {ids.shape}")
        return cls(pattern, index, ids, entry)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def label_id(self, row: int) -> str:
        return bytes(self.ids[row]).decode("ascii")

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Scores and rows (n, k) of the nearest vectors; rows are -1 past the shard's end."""
        return self.index.search(np.ascontiguousarray(queries, np.float32), min(k, max(len(self), 1)))

    def label_ids(self) -> Iterable[str]:
        return (bytes(v).decode("ascii") for v in self.ids)


class ShardSet:
    """All shards of a bundle, searched by pattern."""

    def __init__(self, shards: dict[str, Shard]) -> None:
        self.shards = shards

    @classmethod
    def load(cls, bundle: Path, section: Shards, mmap: bool = True) -> ShardSet:
        """The shards of a manifest's section (its format checked by `Shards.from_dict`)."""
        shards = {pattern: Shard.load(bundle, pattern, entry, mmap) for pattern, entry in section.entries.items()}
        for shard in shards.values():
            if shard.index.d != section.embedding_dim:
                raise PufError(f"{shard.entry.index} holds {shard.index.d}-d vectors; the manifest says "
                               f"{section.embedding_dim}")
            if len(shard.ids) != shard.index.ntotal:
                raise PufError(f"{shard.entry.ids} names {len(shard.ids)} labels for the {shard.index.ntotal} vectors "
                               f"of {shard.entry.index}")
        return cls(shards)

    @property
    def patterns(self) -> list[str]:
        return list(self.shards)

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards.values())

    def search(self, queries: np.ndarray, patterns: Sequence[Sequence[str]]) -> list[Match | None]:
        """The best match of each query among the shards of its patterns (None when none of
        them holds a label). Queries sharing a shard are searched in one call."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(len(patterns), -1)
        best: list[Match | None] = [None] * len(patterns)
        wanted: dict[str, list[int]] = {}
        for i, names in enumerate(patterns):
            for name in names:
                if name in self.shards:
                    wanted.setdefault(name, []).append(i)
        for name, rows in wanted.items():
            shard = self.shards[name]
            if not len(shard):
                continue
            scores, found = shard.search(queries[rows], 1)
            for i, score, row in zip(rows, scores[:, 0], found[:, 0], strict=True):
                current = best[i]
                if row >= 0 and (current is None or score > current.score):
                    best[i] = Match(shard.label_id(int(row)), name, float(score))
        return best
