"""A region's fingerprints split by pattern class into files as they are read, so that an
export scans the store once (`FingerprintStore.pages`) and then holds one pattern's
vectors at a time: memory stays one page plus the largest shard, whatever the region's size.

Each pattern of `classes` gets two files in `folder`, named by its index (a pattern name never
becomes a path): its vectors, raw float32, and its rows' label ids and copies, a line each.
Rows of patterns outside `classes` are counted and left out, as a shard holds only its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class PatternSpill:
    """`with PatternSpill(folder, classes, dim) as spill: spill.add(...) ...; spill.rows(pattern)`."""

    def __init__(self, folder: Path, classes: Sequence[str], dim: int) -> None:
        self.folder, self.dim = Path(folder), dim
        self._index = {pattern: i for i, pattern in enumerate(classes)}
        self._vectors = {i: open(self.folder / f"{i}.f32", "wb") for i in self._index.values()}
        self._ids = {i: open(self.folder / f"{i}.ids", "w", encoding="utf-8") for i in self._index.values()}
        self.other = 0  # rows of a pattern outside `classes`

    def __enter__(self) -> PatternSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        for handle in (*self._vectors.values(), *self._ids.values()):
            handle.close()

    def add(self, label_ids: Sequence[str], patterns: Sequence[str], copies: Sequence[int] | np.ndarray,
            vectors: np.ndarray) -> None:
        """Append a page of rows, a column a field (row i: label_ids[i], patterns[i],
        copies[i], vectors[i]), to their patterns' files."""
        index = np.fromiter((self._index.get(pattern, -1) for pattern in patterns), np.int64, len(patterns))
        self.other += int(np.count_nonzero(index < 0))
        vectors = np.asarray(vectors, np.float32)
        for i in np.unique(index[index >= 0]).tolist():
            chosen = np.flatnonzero(index == i)
            self._vectors[i].write(vectors[chosen].tobytes())
            self._ids[i].write("".join(f"{label_ids[k]}\t{int(copies[k])}\n" for k in chosen.tolist()))

    def rows(self, pattern: str) -> tuple[list[str], np.ndarray]:
        """The label id of each row of `pattern` and the (rows, dim) vectors, ordered by label
        and copy (an export does not depend on the order the store returned them in)."""
        i = self._index[pattern]
        self._vectors[i].flush()
        self._ids[i].flush()
        lines = (self.folder / f"{i}.ids").read_text(encoding="utf-8").splitlines()
        if not lines:
            return [], np.zeros((0, self.dim), np.float32)
        ids, copies = zip(*(line.split("\t") for line in lines), strict=True)
        vectors = np.fromfile(self.folder / f"{i}.f32", np.float32).reshape(len(lines), self.dim)
        order = np.lexsort((np.asarray(copies, np.int64), np.asarray(ids)))
        return [ids[k] for k in order], vectors[order]
