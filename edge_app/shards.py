"""Per-pattern Faiss shards: one index per pattern class, and the label ids its rows map to.

In a bundle::

    shards/p07.faiss      Faiss index of pattern class 7 (inner product on L2-normalised
                          fingerprints); row i of the index is vector i
    shards/p07.ids.npy    (vectors,) fixed-width bytes: the label id of every row (a label
                          enrolled with several rotations or augmented copies has several)
    shards/p07.rows.npy   kind ivf_pq_sq8 only: (vectors, d) uint8, each vector's SQ8 code
                          (`Reranked`: the PQ codes in memory find a few candidates, these
                          rows, read from storage, give their scores)

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
millions of labels takes milliseconds and its pages are read on demand and shared. Row
files are read a few rows a query with ``os.pread``: memory-mapped, every row a search
touched stayed resident (tools/results/bench_device_memory.md).
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.bundle_format import ShardEntry, ShardRows, Shards
from edge_app.errors import PufError, require_module


def ivf_nlist(n: int) -> int:
    """Cells for an IVF of n vectors: about 4 sqrt(n), a power of two, with >= 39 training
    vectors a cell (Faiss's k-means rule of thumb). Enrollment plans shards with it
    (`trainer.index_build`), `puf device bench` its synthetic shard."""
    target = 2 ** round(math.log2(max(16.0, 4.0 * math.sqrt(n))))
    return int(max(16, min(target, 2 ** int(math.log2(max(n // 39, 16))))))


def faiss_index(index):
    """The Faiss index of a shard's index (itself, or the PQ index a `Reranked` searches)."""
    return index.index if isinstance(index, Reranked) else index


def set_search_params(index, params: dict) -> None:
    """Apply tuned search parameters (an IVF's nprobe) to an index."""
    import faiss

    ivf = faiss.try_extract_index_ivf(faiss_index(index))
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


class RowFile:
    """A row file (.npy of (rows, width) uint8) on storage, checked when opened, read by row
    number with ``os.pread``; `take` as numpy's ``ndarray.take(rows, axis=0)``. Its file
    descriptor is closed when it is collected."""

    def __init__(self, path: Path, rows: int, width: int) -> None:
        self.name = path.name
        try:
            with Path(path).open("rb") as f:
                version = np.lib.format.read_magic(f)
                header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = header(f)
                self.offset = f.tell()
            self.fd = os.open(path, os.O_RDONLY)
        except (OSError, ValueError) as error:
            raise PufError(f"cannot read the row file {path.name}: {error}") from None
        weakref.finalize(self, os.close, self.fd)
        size = os.fstat(self.fd).st_size
        if dtype != np.uint8 or fortran or shape != (rows, width):
            raise PufError(f"{path.name} must hold ({rows}, {width}) uint8 rows (one SQ8 code a vector of its index), "
                           f"got {dtype} {shape}" + (" in Fortran order" if fortran else ""))
        if size != self.offset + rows * width:
            raise PufError(f"{path.name} is {size} bytes, not the {self.offset + rows * width} of its "
                           f"({rows}, {width}) rows")
        self.shape = (rows, width)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: np.ndarray, axis: int = 0) -> np.ndarray:
        width = self.shape[1]
        out = np.empty((len(rows), width), np.uint8)
        for i, row in enumerate(np.asarray(rows).tolist()):
            data = os.pread(self.fd, width, self.offset + row * width)
            if len(data) != width:
                raise PufError(f"{self.name} ended before row {row}: it changed after it was checked")
            out[i] = np.frombuffer(data, np.uint8)
        return out

    def read_all(self) -> np.ndarray:
        """Every row, in one read."""
        rows, width = self.shape
        data = os.pread(self.fd, rows * width, self.offset)
        if len(data) != rows * width:
            raise PufError(f"{self.name} ended early: it changed after it was checked")
        return np.frombuffer(data, np.uint8).reshape(rows, width).copy()


class Reranked:
    """A shard of kind ivf_pq_sq8: its IVF-PQ index finds the `candidates` nearest rows by
    their PQ codes (scores off by up to 0.1), and the scores returned are those of the rows'
    SQ8 codes (`rows`: a `RowFile`, or the codes in memory while enrollment builds it), within
    SQ8's error of exact ones, as an IVF-SQ8 shard's. Searches as a Faiss index does."""

    def __init__(self, index, rows, vmin: np.ndarray, vdiff: np.ndarray, candidates: int) -> None:
        if rows.shape != (index.ntotal, index.d) or len(vmin) != index.d or len(vdiff) != index.d:
            raise PufError(f"a re-ranked shard needs one SQ8 row a vector and a range a dimension: "
                           f"{rows.shape} rows, {len(vmin)} ranges for {index.ntotal} vectors of {index.d}")
        self.index, self.rows, self.candidates = index, rows, int(candidates)
        self.vmin = np.asarray(vmin, np.float32)
        self.vdiff = np.asarray(vdiff, np.float32)

    @classmethod
    def open(cls, index, path: Path, rows: ShardRows, mmap: bool = True) -> Reranked:
        """The shard of `index` and the row file at `path` (read whole when not `mmap`)."""
        found = RowFile(path, index.ntotal, index.d)
        return cls(index, found if mmap else found.read_all(), np.array(rows.vmin), np.array(rows.vdiff),
                   rows.candidates)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def d(self) -> int:
        return int(self.index.d)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Faiss's own 8-bit decode (the codec `trainer.index_build.sq8_codec` encodes with), redone
        here so that a device needs no trainer code; a test pins the two together."""
        return self.vmin + (codes.astype(np.float32) + 0.5) * (self.vdiff / np.float32(255.0))

    def codes(self) -> np.ndarray:
        """Every row's SQ8 code, (ntotal, d) uint8."""
        return self.rows if isinstance(self.rows, np.ndarray) else self.rows.read_all()

    def vectors(self) -> np.ndarray:
        """Every row, decoded."""
        return self.decode(self.codes())

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and rows (n, k), best first, as Faiss returns them (rows -1 past the end)."""
        queries = np.ascontiguousarray(queries, np.float32)
        found = self.index.search(queries, max(k, self.candidates))[1]
        bad = (found < -1) | (found >= self.ntotal)
        if bad.any():
            raise PufError(f"the index of a re-ranked shard returned row {int(found[bad][0])}, outside its "
                           f"{self.ntotal} rows: the shard is corrupt")
        codes = self.rows.take(np.maximum(found, 0).ravel(), axis=0).reshape(*found.shape, self.d)
        scores = np.einsum("nkd,nd->nk", self.decode(codes), queries)
        scores[found < 0] = -np.finfo(np.float32).max
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(found, order, 1)


def open_index(bundle: Path, entry: ShardEntry, mmap: bool = True):
    """A shard's index as it searches: its Faiss index, or a `Reranked` one when it has rows."""
    index = read_index(Path(bundle) / entry.index, mmap)
    return index if entry.rows is None else Reranked.open(index, Path(bundle) / entry.rows.file, entry.rows, mmap)


def stored_vectors(index) -> np.ndarray:
    """Every vector a shard's index holds, decoded: the one reading of a shard's vectors
    (appending, removing labels, evaluation). From its SQ8 rows when it has them (never its
    PQ codes); exact for Flat, within the codes' error otherwise."""
    import faiss

    if isinstance(index, Reranked):
        return index.vectors()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()
    return index.reconstruct_n(0, index.ntotal)


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
        index = open_index(bundle, entry, mmap)
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
