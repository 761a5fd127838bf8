"""Enrolled labels' thumbnails, carried in the bundle when enrollment was asked to
(`puf enroll --thumbnails PX`), so the device can show a genuine match beside the label
it was enrolled as.

One file per shard, beside its index and id map::

    shards/p07.thumbs.npy   uint8 (labels, PX, PX): the green (fluorescence) channel of
                            each label's crop as enrolled, downscaled; row k is the k-th
                            label to appear in the shard's id map (a label's rotated or
                            augmented copies sit together in the id map and share one row)

listed and signed in the manifest like every other file (so a changed thumbnail makes
the bundle refused), and described in the manifest's ``"shards"`` section::

    "thumbnails": {"px": 64, "channel": "green"}
    "classes": {"<pattern>": {..., "thumbnails": "shards/p07.thumbs.npy"}}

PX * PX bytes a label (64: 4 KiB, 4 million labels 16 GB of storage). The files are
memory-mapped and read a row at a time, so they cost no memory.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_app.bundle_format import Manifest, Shards
from edge_app.errors import PufError


def make_thumbnail(crop: np.ndarray, px: int) -> np.ndarray:
    """A label crop (BGR or grey uint8) as a PX x PX grey thumbnail (its green channel)."""
    image = np.asarray(crop)
    if image.ndim == 3:
        image = image[:, :, 1] if image.shape[2] >= 3 else image[:, :, 0]
    return cv2.resize(np.ascontiguousarray(image, np.uint8), (px, px), interpolation=cv2.INTER_AREA)


def label_starts(ids: np.ndarray) -> np.ndarray:
    """Rows of an id map where a label's run of copies begins: row k of the thumbnails is
    the label at ``ids[starts[k]]``."""
    if not len(ids):
        return np.zeros(0, np.int64)
    return np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1])


class Thumbnails:
    """Reads a bundle's thumbnails lazily: a shard's files are mapped on first use."""

    def __init__(self, bundle_dir: Path, section: Shards) -> None:
        self.path = Path(bundle_dir)
        self.px = int((section.thumbnails or {})["px"])
        self._entries = {pattern: entry for pattern, entry in section.entries.items() if entry.thumbnails}
        self._open: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def open(cls, bundle_dir: Path) -> Thumbnails | None:
        """The bundle's thumbnails, or None when it carries none. Checks no checksum (open
        the bundle with `edge_app.bundle.load_bundle` first, which checks every file), but
        reads only files the manifest lists inside the bundle."""
        manifest = Manifest.read(Path(bundle_dir))
        manifest.check_named_files()
        if manifest.shards is None or not manifest.shards.thumbnails:
            return None
        return cls(bundle_dir, manifest.shards)

    def __len__(self) -> int:
        return sum(entry.labels or 0 for entry in self._entries.values())

    def get(self, label_id: str, pattern: str | None = None) -> np.ndarray | None:
        """The label's thumbnail (grey uint8, PX x PX), or None when the bundle has none for
        it. `pattern`, the shard to look in first, saves looking through the others."""
        if not label_id.isascii():
            return None
        key = label_id.encode("ascii")
        order = sorted(self._entries, key=lambda name: name != pattern)
        for name in order:
            ids, starts, pixels = self._shard(name)
            hits = np.flatnonzero(ids == key)
            if len(hits):
                return np.array(pixels[int(np.searchsorted(starts, hits[0], side="right")) - 1])
        return None

    def _shard(self, pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if pattern not in self._open:
            entry = self._entries[pattern]
            try:
                ids = np.load(self.path / entry.ids, mmap_mode="r", allow_pickle=False)
                pixels = np.load(self.path / str(entry.thumbnails), mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise PufError(f"cannot read the thumbnails {entry.thumbnails}: {error}") from None
            starts = label_starts(ids)
            if pixels.dtype != np.uint8 or pixels.shape[1:] != (self.px, self.px) or len(pixels) != len(starts):
                raise PufError(f"{entry.thumbnails} holds {pixels.dtype} {pixels.shape}; the shard has "
                               f"{len(starts)} labels of {self.px}x{self.px} px")
            self._open[pattern] = (ids, starts, pixels)
        return self._open[pattern]
