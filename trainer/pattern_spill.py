"""A region's fingerprints split by pattern class into files as they are read, so that an
export scans the store once (`FingerprintStore.batches`) and then holds one pattern's
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
    """`with PatternSpill(folder, classes, dim) as spill: spill.add(batch) ...; spill.rows(pattern)`."""

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

    def add(self, batch: Sequence[dict]) -> None:
        """Append a page of rows (label_id, pattern, copy, vector) to their patterns' files."""
        by_pattern: dict[int, list[dict]] = {}
        for row in batch:
            i = self._index.get(row["pattern"])
            if i is None:
                self.other += 1
            else:
                by_pattern.setdefault(i, []).append(row)
        for i, rows in by_pattern.items():
            self._vectors[i].write(np.asarray([row["vector"] for row in rows], np.float32).tobytes())
            self._ids[i].write("".join(f"{row['label_id']}\t{int(row['copy'])}\n" for row in rows))

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
