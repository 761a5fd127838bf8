"""Take labels out of a bundle's shards, in a new version (`trainer.bundle_write.BundleUpdate`).

A shard that holds one of the labels is rebuilt from its own decoded vectors less the
label's rows (`trainer.enroll.write_shard`, as an enrollment builds a shard, tuned again);
its thumbnails lose the label's row; a shard left empty goes, files and entry. Nothing is
embedded again. Used by `puf revoke` (`trainer.revoke`), which keeps the removed vectors in
the bundle's revocation list so the device still recognises the label.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_app.bundle_format import MANIFEST, ShardEntry
from edge_app.shards import read_index
from edge_app.thumbnails import label_starts
from trainer import index_build
from trainer.enroll import close_section, genuine_cosine_of, shard_budget, write_shard, write_thumbnails

if TYPE_CHECKING:
    from trainer.bundle_write import BundleUpdate
    from trainer.enroll import EnrollOptions


def remove_labels(update: BundleUpdate, label_ids: set[str], options: EnrollOptions
                  ) -> dict[str, tuple[str, np.ndarray]]:
    """Remove `label_ids` from the shards of the new version `update`; returns each label
    found as label id -> (its pattern, its vectors as the shard held them). Labels not in the
    bundle are not in the result."""
    source: Path = update.source
    section = update.manifest.shards
    if section is None:
        return {}
    classes = list(update.manifest.pattern_classes or [])
    removed: dict[str, tuple[str, np.ndarray]] = {}
    entries = dict(section.entries)
    budget = shard_budget(update.manifest, options, max(section.vectors or 0, 1), [])
    genuine_cosine = genuine_cosine_of(options, update.manifest)
    for pattern, entry in section.entries.items():
        ids = np.load(source / entry.ids, allow_pickle=False)
        names = np.char.decode(ids, "ascii")
        gone = np.isin(names, list(label_ids))
        if not gone.any():
            continue
        vectors = index_build.reconstruct_all(read_index(source / entry.index, mmap=False))
        for label_id in sorted(set(names[gone].tolist())):
            removed[label_id] = (pattern, vectors[names == label_id])
        class_index = classes.index(pattern)
        for name in entry.named_files().values():
            if name is not None:
                update.remove(name)
        if gone.all():
            del entries[pattern]
            continue
        written = write_shard(update, source, class_index, None, vectors[~gone], names[~gone].tolist(), budget,
                              options, genuine_cosine)
        if entry.thumbnails is not None:
            thumbnails = np.load(source / entry.thumbnails, allow_pickle=False)
            kept_labels = ~gone[label_starts(ids)]
            written["thumbnails"] = write_thumbnails(update, class_index, thumbnails[kept_labels], None)
        entries[pattern] = ShardEntry.from_dict(pattern, written, MANIFEST)
    section.classes = entries
    close_section(section, classes, options)
    return removed
