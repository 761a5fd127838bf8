"""Undoing an enrollment: labels taken out of a bundle's shards, signed as a new version.

A batch enrolled by mistake is removed, not revoked: the new version simply does not hold its
labels (a device then finds no match for them), where a revocation list (`puf revoke`) keeps
them and makes a device say "revoked". The shards are edited by `trainer.label_removal`, and
the version is committed through `trainer.bundle_write.BundleUpdate` (sequence + 1, signed,
the key's signing record kept).
The factory registry then records the labels as no longer in this bundle: they stay enrolled
in every other bundle that holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_app.bundle import OpenedBundle
from edge_app.bundle_format import Manifest, ShardEntry, Shards
from edge_app.errors import PufError
from fabrication.registry import Registry
from trainer.bundle_write import BundleUpdate, bundle_lock, read_for_update
from trainer.enroll import bundle_name, enrolled_label_ids, record_enrolled
from trainer.label_removal import removal_options
from trainer.label_removal import remove_labels as remove_from_shards

if TYPE_CHECKING:
    from trainer.enroll import EnrollOptions
    from trainer.keys import SigningKey


def batch_of(label_id: str) -> str:
    """The batch a label id belongs to (BATCH-FIELD-SLOT, `edge_app.ids`)."""
    return label_id.rsplit("-", 2)[0]


def recorded_in(bundle: Path, registry: Path | None) -> set[str]:
    """The labels the factory `registry` records as enrolled into the bundle (none without one)."""
    if registry is None:
        return set()
    with Registry(registry) as opened:
        return opened.enrolled_in(bundle_name(bundle))


def chosen_labels(bundle: Path, batches: tuple[str, ...] = (), label_ids: tuple[str, ...] = (),
                  registry: Path | None = None) -> set[str]:
    """The labels of `batches` that the bundle holds (or that `registry` records it holding:
    a removal cut off before its record), and `label_ids`."""
    held = enrolled_label_ids(bundle, Manifest.read(bundle)) | recorded_in(bundle, registry)
    return {label_id for label_id in held if batch_of(label_id) in batches} | set(label_ids)


def remove_labels(bundle: Path, label_ids: set[str], private_key: SigningKey | None = None,
                  trusted_keys: Path | None = None, valid_days: float | None = None,
                  registry: Path | None = None, memory_mb: float | None = None,
                  accept_approximate_scores: bool = False) -> dict:
    """Remove `label_ids` from the bundle's shards as a new version signed with `private_key`
    (only over a manifest that key or one of `trusted_keys` signed), and record them as no
    longer in this bundle in the factory `registry` when given; returns a report. Shards are
    rebuilt within `memory_mb` (default: the bundle's budget) as `removal_options` says. Labels the
    bundle no longer holds are only recorded (a re-run after a cut converges); none of them
    held or recorded is a PufError that changes nothing."""
    if not label_ids:
        raise PufError("no label to remove: name a batch the bundle holds, or label ids")
    bundle = Path(bundle)
    with bundle_lock(bundle):
        opened = read_for_update(bundle, private_key, trusted_keys)
        manifest = opened.manifest
        present = label_ids & enrolled_label_ids(bundle, manifest)
        report: dict = {"bundle": str(bundle), "labels_removed": len(present), "shards": {},
                        "batches": sorted({batch_of(label_id) for label_id in label_ids})}
        if present:
            options = removal_options(manifest, memory_mb, accept_approximate_scores, valid_days)
            manifest = _write_version(opened, present, private_key, trusted_keys, options, report)
        elif not recorded_in(bundle, registry) & label_ids:
            raise PufError(f"the bundle {bundle} holds none of the {len(label_ids)} label(s) to remove (e.g. "
                           f"{sorted(label_ids)[0]}); nothing changed")
        if registry is not None:
            record_enrolled(bundle, registry, sorted(label_ids), removed=True)
    section = manifest.shards or Shards()
    report.update({"labels_total": section.labels or 0, "vectors_total": section.vectors or 0,
                   "sequence": manifest.release.sequence, "signed_by": manifest.signer})
    return report


def _write_version(opened: OpenedBundle, present: set[str], private_key: SigningKey | None,
                   trusted_keys: Path | None, options: EnrollOptions, report: dict) -> Manifest:
    """The opened bundle's new version without `present`; its shards' entries go into `report`."""
    with BundleUpdate(opened) as update:
        _, report["shards"] = remove_from_shards(update, present, options)
        return update.commit(private_key, options.valid_days, trusted_keys=trusted_keys)


def _ids(bundle: Path, entry: ShardEntry) -> np.ndarray:
    """A shard's id map as text."""
    return np.char.decode(np.load(bundle / entry.ids, allow_pickle=False), "ascii")


def describe(report: dict) -> str:
    """The report for people."""
    lines = [f"bundle {report['bundle']}: -{report['labels_removed']} labels (batches "
             f"{', '.join(report['batches'])}), {report['labels_total']} labels left; sequence "
             f"{report['sequence']}, signed by {report['signed_by'] or 'NOBODY (no --key: devices will refuse it)'}"]
    for pattern, entry in report["shards"].items():
        lines.append(f"  {pattern:<12}{entry['labels']:>8} labels  {entry['action']}")
    return "\n".join(lines)
