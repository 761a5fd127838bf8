"""`puf revoke`: labels out of a bundle's shards and onto its signed revocation list.

A new version of the bundle (`trainer.bundle_write.BundleUpdate`, signed through its one
path) in which the labels are no longer enrolled (`trainer.label_removal`) and are listed,
with the time and the reason, in the revocation list (`edge_app.revocations`), whose version
rises by one; their fingerprints move with them, so a device calls a photo of one "revoked".
Revoking a label already on the list changes nothing; a label the bundle does not hold is
refused (nothing to recognise it by), and nothing is written.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_app.bundle_format import utc_text
from edge_app.errors import PufError
from edge_app.ids import check_id
from edge_app.revocations import REVOKED, REVOKED_IDS, REVOKED_VECTORS, Revocation, RevocationList, Revoked
from trainer.bundle_write import BundleUpdate, bundle_lock, read_for_update
from trainer.label_removal import removal_options, remove_labels

if TYPE_CHECKING:
    from trainer.bundle_write import BundleUpdate
    from trainer.keys import SigningKey


def write_revoked(update: BundleUpdate, revoked: Revoked) -> None:
    """Write the revocation list and its fingerprints into the new version `update`."""
    revoked.listing.write(update.path_for(REVOKED))
    np.save(update.path_for(REVOKED_VECTORS), np.ascontiguousarray(revoked.vectors, np.float32), allow_pickle=False)
    np.save(update.path_for(REVOKED_IDS), revoked.ids, allow_pickle=False)


def combined(known: list[Revoked], added: list[Revocation], found: dict[str, tuple[str | None, np.ndarray]],
             dim: int) -> Revoked:
    """One revocation list holding every entry of `known` and `added` (a label listed twice
    keeps its first entry), its version one above the highest of `known`; each label's
    fingerprints (and pattern) from `found` (label id -> pattern, vectors), else from the
    first of `known` that holds them."""
    entries: dict[str, Revocation] = {}
    for entry in [e for revoked in known for e in revoked.listing.entries] + added:
        pattern = found[entry.label_id][0] if entry.label_id in found else entry.pattern  # the shard's, searched by
        entries.setdefault(entry.label_id, replace(entry, pattern=pattern))
    rows: dict[str, np.ndarray] = {i: vectors for i, (_, vectors) in found.items() if i in entries}
    for revoked in known:
        names = np.char.decode(revoked.ids, "ascii") if len(revoked.ids) else np.zeros(0, str)
        for label_id in dict.fromkeys(names.tolist()):
            rows.setdefault(label_id, revoked.vectors[names == label_id])
    ids = [label_id.encode() for label_id, vectors in rows.items() for _ in range(len(vectors))]
    return Revoked(RevocationList(max([r.listing.version for r in known], default=0) + 1, list(entries.values())),
                   np.concatenate([np.zeros((0, dim), np.float32), *rows.values()]).astype(np.float32),
                   np.array(ids, dtype=f"S{max([len(i) for i in ids] + [1])}"))


def revoke(bundle: Path, label_ids: list[str], private_key: SigningKey | None, reason: str,
           trusted_keys: Path | None = None, memory_mb: float | None = None,
           accept_approximate_scores: bool = False) -> dict:
    """Revoke `label_ids` in `bundle` (one writer at a time: `bundle_lock`); returns a report.
    Shards are rebuilt within `memory_mb` (default: the bundle's budget) as `removal_options` says."""
    wanted = list(dict.fromkeys(check_id("label", i) for i in label_ids))
    if not wanted:
        raise PufError("give the labels to revoke (LABEL_ID..., or --from FILE)")
    bundle = Path(bundle)
    with bundle_lock(bundle):
        opened = read_for_update(bundle, private_key, trusted_keys)
        manifest = opened.manifest
        current = Revoked.load(bundle, manifest)
        already = [i for i in wanted if i in current.listing.label_ids]
        todo = [i for i in wanted if i not in already]
        report = {"bundle": str(bundle), "revoked": todo, "already_revoked": already,
                  "list_version": current.listing.version, "sequence": manifest.release.sequence,
                  "signed_by": manifest.signer}
        if not todo:
            return report
        options = removal_options(manifest, memory_mb, accept_approximate_scores)
        with BundleUpdate(opened) as update:
            found, _ = remove_labels(update, set(todo), options)
            missing = [i for i in todo if i not in found]
            if missing:
                raise PufError(f"label {missing[0]} is not enrolled in the bundle {bundle}"
                               + (f" (nor are {len(missing) - 1} more)" if len(missing) > 1 else "")
                               + ": nothing revoked, the bundle is unchanged")
            now = utc_text(datetime.now(UTC))
            revoked = combined([current], [Revocation(i, found[i][0], now, reason) for i in todo], dict(found),
                               int(manifest.embedding_dim or 0))
            write_revoked(update, revoked)
            written = update.commit(private_key, trusted_keys=trusted_keys)
    report.update({"list_version": revoked.listing.version, "sequence": written.release.sequence,
                   "signed_by": written.signer, "patterns": {i: found[i][0] for i in todo}})
    return report


def describe(report: dict) -> str:
    """The report for people."""
    lines = [f"bundle {report['bundle']}: revoked {len(report['revoked'])} label(s), revocation list version "
             f"{report['list_version']}, sequence {report['sequence']}; signed by "
             f"{report['signed_by'] or 'NOBODY (no --key: devices will refuse it)'}"]
    lines += [f"revoked {i} (pattern {report['patterns'][i]})" for i in report["revoked"]]
    lines += [f"already revoked {i}: unchanged" for i in report["already_revoked"]]
    return "\n".join(lines)
