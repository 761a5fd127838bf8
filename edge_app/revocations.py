"""A bundle's revocation list: the labels no longer genuine (stolen, recalled), read and written here.

    BUNDLE/revoked.json          {"format": 1, "version": 3, "entries": [{"label_id", "pattern", "time", "reason"}]}
    BUNDLE/revoked/vectors.npy   (n, d) float32: the revoked labels' fingerprints, as they were enrolled
    BUNDLE/revoked/ids.npy       (n,) bytes: the label id of each row

The files are bundle files like any other: listed with their sha256 in the manifest, so the
bundle's one signature covers them (an edited or planted list is refused as any altered or
unlisted file is, `edge_app.bundle.check_bundle_files`). A revoked label's vectors leave the
shards (`trainer.label_removal`) and stay here, so a photo of it is still recognised and
called "revoked", not "not in this bundle's labels" (`edge_app.verify`).

The list only grows, and its ``version`` counts up by one with every change: a device keeps
the highest version and every id it has seen revoked (`edge_app.device_store`) and refuses a
bundle whose list is older or leaves one out, so no bundle, however new its sequence, can
un-revoke a label on a device (a fresh export enrolled without the list, a region exported
without it). Undoing a revocation is deliberately not offered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_app.errors import PufError
from edge_app.ids import check_id
from edge_app.shards import Match

if TYPE_CHECKING:
    from edge_app.bundle_format import Manifest
    from edge_app.shards import Match

REVOKED = "revoked.json"
REVOKED_VECTORS = "revoked/vectors.npy"
REVOKED_IDS = "revoked/ids.npy"
FILES = (REVOKED, REVOKED_VECTORS, REVOKED_IDS)
LIST_FORMAT = 1
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Revocation:
    label_id: str
    pattern: str | None  # the pattern of the label's shard (None: the label was not in the bundle)
    time: str  # ISO 8601 UTC
    reason: str


@dataclass
class RevocationList:
    """The list (`version` 0 and no entries: the bundle has none)."""

    version: int = 0
    entries: list[Revocation] = field(default_factory=list)

    @property
    def label_ids(self) -> set[str]:
        return {entry.label_id for entry in self.entries}

    def get(self, label_id: str) -> Revocation | None:
        return next((entry for entry in self.entries if entry.label_id == label_id), None)  # one verdict's: rare

    def to_dict(self) -> dict:
        return {"format": LIST_FORMAT, "version": self.version, "entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_dict(cls, data: object, where: str = REVOKED) -> RevocationList:
        """The list of a JSON value; a PufError naming the field that is wrong."""
        if not isinstance(data, dict) or data.get("format") != LIST_FORMAT:
            raise PufError(f"{where} is not a revocation list of format {LIST_FORMAT}")
        version, entries = data.get("version"), data.get("entries")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**53:
            raise PufError(f"{where}: \"version\" must be a whole number of at least 1, got {version!r}")
        if not isinstance(entries, list):
            raise PufError(f"{where}: \"entries\" must be a list")
        out: list[Revocation] = []
        for item in entries:
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("time", "reason")) \
                    or not isinstance(item.get("pattern"), str | None) or len(item["reason"]) > MAX_REASON_CHARS:
                raise PufError(f"{where}: each entry must be an object of label_id, pattern, time and reason "
                               f"(at most {MAX_REASON_CHARS} characters)")
            out.append(Revocation(check_id("label", item.get("label_id")), item["pattern"], item["time"],
                                  item["reason"]))
        if len({e.label_id for e in out}) != len(out):
            raise PufError(f"{where}: a label is listed twice")
        return cls(version, out)

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")


def check_reason(reason: str) -> str:
    """A revocation's reason (--reason): one line of at most `MAX_REASON_CHARS` characters."""
    if not reason.strip() or len(reason) > MAX_REASON_CHARS or any(ord(c) < 32 for c in reason):
        raise PufError(f"--reason: a revocation's reason is one line of 1 to {MAX_REASON_CHARS} characters")
    return reason


def label_ids(given: list[str], from_file: Path | None) -> list[str]:
    """The ids given (`puf revoke`, `puf registry revoke`), then those of `from_file` (one a
    line; blank lines and # comments skipped)."""
    ids = list(given)
    if from_file is not None:
        try:
            text = Path(from_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise PufError(f"cannot read the label list {from_file}: {error}") from None
        ids += [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
    return ids


@dataclass
class Revoked:
    """A bundle's revocation list and the fingerprints that recognise its labels."""

    listing: RevocationList = field(default_factory=RevocationList)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, "S1"))

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> Revoked:
        """The revocations of the bundle folder `bundle` (none when its manifest lists no list);
        its files' checksums are the caller's to have checked."""
        files = manifest.file_entries
        if REVOKED not in files:
            return cls()
        missing = [name for name in FILES if name not in files]
        if missing:
            raise PufError(f"the bundle's revocation list comes without {missing[0]}: the bundle is incomplete")
        bundle = Path(bundle)
        try:
            data = json.loads((bundle / REVOKED).read_text(encoding="utf-8"))
            vectors = np.load(bundle / REVOKED_VECTORS, allow_pickle=False)
            ids = np.load(bundle / REVOKED_IDS, allow_pickle=False)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:
            raise PufError(f"cannot read the bundle's revocation list: {error}") from None
        revoked = RevocationList.from_dict(data)
        dim = int(manifest.embedding_dim or 0)
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != dim or ids.ndim != 1 \
                or ids.dtype.kind != "S" or len(ids) != len(vectors):
            raise PufError(f"{REVOKED_VECTORS} and {REVOKED_IDS} must be (n, {dim}) float32 fingerprints and n "
                           "label ids")
        unlisted = {bytes(i).decode("ascii", "replace") for i in ids} - revoked.label_ids
        if unlisted:
            raise PufError(f"{REVOKED_IDS} names {sorted(unlisted)[0]}, which the revocation list does not list")
        return cls(revoked, vectors, ids)

    @cached_property
    def _rows(self) -> tuple[list[str], np.ndarray]:
        """Each row's label id, and its pattern (as listed)."""
        ids = [bytes(i).decode("ascii") for i in self.ids]
        patterns = {entry.label_id: entry.pattern for entry in self.listing.entries}
        return ids, np.array([patterns.get(i) or "" for i in ids], dtype=object)

    def search(self, queries: np.ndarray, patterns: Sequence[Sequence[str]]) -> list[Match | None]:
        """The best revoked label of each query among those of its patterns (None: none): an
        exact search, the list being small."""
        best: list[Match | None] = [None] * len(patterns)
        if not len(self.ids):
            return best
        ids, row_patterns = self._rows
        scores = np.asarray(queries, np.float32).reshape(len(patterns), -1) @ self.vectors.T
        for q, allowed in enumerate(patterns):
            rows = np.flatnonzero(np.isin(row_patterns, list(allowed)))
            if len(rows):
                r = int(rows[np.argmax(scores[q, rows])])
                best[q] = Match(ids[r], str(row_patterns[r]), float(scores[q, r]))
        return best
