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
from edge_app.shards import open_index, stored_vectors
from edge_app.thumbnails import label_starts
from trainer.enroll import (
    DEFAULT_BUDGET_MB,
    EnrollOptions,
    check_score_errors,
    close_section,
    genuine_cosine_of,
    shard_budget,
    write_shard,
    write_thumbnails,
)

if TYPE_CHECKING:
    from edge_app.bundle_format import Manifest
    from trainer.bundle_write import BundleUpdate


def removal_options(manifest: Manifest, memory_mb: float | None = None, accept_approximate_scores: bool = False,
                    valid_days: float | None = None) -> EnrollOptions:
    """How a removal rebuilds shards: within `memory_mb` (default: the budget the bundle's
    shards were planned for), refusing a rebuilt shard whose scores rise as `puf enroll` does."""
    section = manifest.shards
    budget = memory_mb or (section.memory_budget_mb if section else None) or DEFAULT_BUDGET_MB
    return EnrollOptions(memory_budget_mb=budget, valid_days=valid_days,
                         accept_approximate_scores=accept_approximate_scores)


def remove_labels(update: BundleUpdate, label_ids: set[str], options: EnrollOptions
                  ) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, dict]]:
    """Remove `label_ids` from the shards of the new version `update`. Returns each label found
    as label id -> (its pattern, its vectors as the shard held them), and each shard changed as
    pattern -> its new entry with "action" ("rebuilt", or "dropped" when nothing was left).
    Labels not in the bundle are in neither. A rebuilt shard whose scores rise above exact ones
    by more than MAX_SCORE_RISE is refused unless `options.accept_approximate_scores`, as at
    enrollment (`trainer.enroll.check_score_errors`): a smaller shard pays more a vector for
    its IVF centroids, so the same budget can give it coarser codes."""
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
    rebuilt: dict[str, dict] = {}
    rebuilt_ids: list[str] = []
    for pattern, entry in section.entries.items():
        ids, names = ids_of[pattern], names_of[pattern]
        gone = np.isin(names, wanted)
        if not gone.any():
            continue
        vectors = stored_vectors(open_index(source, entry, mmap=False))
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
        rebuilt[pattern], rebuilt_ids = written, rebuilt_ids + kept_ids
    check_score_errors(update.manifest, options, rebuilt, max(kept_total, 1), rebuilt_ids)
    section.classes = entries
    close_section(section, classes, options)
    update.manifest.shards = section
    return removed, changed
