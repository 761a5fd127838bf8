"""Take labels out of a bundle's shards, in a new version (`trainer.bundle_write.BundleUpdate`).

A shard that holds one of the labels is rebuilt from its own decoded vectors less the
label's rows (`trainer.enroll.write_shard`, as an enrollment builds a shard, tuned again);
its thumbnails lose the label's row; a shard left empty goes, files and entry. Nothing is
embedded again. Used by `puf unenroll` (`trainer.unenroll`: the labels simply gone) and `puf
revoke` (`trainer.revoke`, which keeps the removed vectors in the bundle's revocation list so
the device still recognises the label).
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
                  ) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, dict]]:
    """Remove `label_ids` from the shards of the new version `update`. Returns each label found
    as label id -> (its pattern, its vectors as the shard held them), and each shard changed as
    pattern -> its new entry with "action" ("rebuilt", or "dropped" when nothing was left).
    Labels not in the bundle are in neither."""
    source: Path = update.source
    section = update.manifest.shards
    if section is None:
        return {}, {}
    classes = list(update.manifest.pattern_classes or [])
    removed: dict[str, tuple[str, np.ndarray]] = {}
    changed: dict[str, dict] = {}
    entries = dict(section.entries)
    ids_of = {pattern: np.load(source / entry.ids, allow_pickle=False) for pattern, entry in entries.items()}
    names_of = {pattern: np.char.decode(ids, "ascii") for pattern, ids in ids_of.items()}
    wanted = list(label_ids)
    kept_total = (section.vectors or 0) - sum(int(np.isin(names, wanted).sum()) for names in names_of.values())
    genuine_cosine = genuine_cosine_of(options, update.manifest)
    for pattern, entry in section.entries.items():
        ids, names = ids_of[pattern], names_of[pattern]
        gone = np.isin(names, wanted)
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
            changed[pattern] = {"labels": 0, "vectors": 0, "action": "dropped"}
            continue
        kept_ids = names[~gone].tolist()
        budget = shard_budget(update.manifest, options, max(kept_total, 1), kept_ids)
        written = write_shard(update, source, class_index, None, vectors[~gone], kept_ids, budget, options,
                              genuine_cosine)
        if entry.thumbnails is not None:
            thumbnails = np.load(source / entry.thumbnails, allow_pickle=False)
            written["thumbnails"] = write_thumbnails(update, class_index, thumbnails[~gone[label_starts(ids)]], None)
        entries[pattern] = ShardEntry.from_dict(pattern, written, MANIFEST)
        changed[pattern] = {**written, "action": "rebuilt"}
    section.classes = entries
    close_section(section, classes, options)
    update.manifest.shards = section
    return removed, changed
