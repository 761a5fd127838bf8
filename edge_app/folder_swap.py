"""Swap a new folder in for an old one by two renames, and repair a swap a crash cut in half.

    swap_in(new, target, aside)   # target -> aside, then new -> target
    repair(target, aside)         # no target but an aside: the aside goes back

A folder cannot be replaced by one atomic rename, so the old one is first renamed aside and
the new one then renamed into place. A crash or power cut between the two leaves no folder
at `target` but a whole one at `aside`, which `repair` puts back: at every moment a whole
version is at one of the two places. The device store (``bundle.previous``, kept until the
next update) and the factory's bundle writers (``.NAME.old``, removed once the swap is done:
`aside_of`) share this one implementation; whoever swaps or repairs must be the only writer
of `target` (the device's app; the factory's `lock_of` lock file).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from edge_app.errors import PufError

log = logging.getLogger(__name__)


def aside_of(target: Path) -> Path:
    """Where the factory's swap puts the old version of `target`: a hidden sibling."""
    target = Path(target)
    return target.with_name(f".{target.name}.old")


def lock_of(target: Path) -> Path:
    """The lock file of the factory's writers of `target`: a hidden sibling (inside, it would
    be replaced with the folder)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def swap_in(new: Path, target: Path, aside: Path) -> None:
    """Make the finished folder `new` the folder at `target`; the old one, if any, is left at
    `aside` (whatever was there before is removed first), flushed to the storage."""
    new, target, aside = Path(new), Path(target), Path(aside)
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        raise PufError(f"cannot remove the old {aside}; {target} is unchanged")
    if target.exists():
        os.replace(target, aside)
    os.replace(new, target)
    sync_dir(target.parent)


def repair(target: Path, aside: Path) -> bool:
    """Put the old version back when a crash left it aside and nothing at `target`; returns
    whether it did."""
    target, aside = Path(target), Path(aside)
    if target.exists() or not aside.is_dir():
        return False
    log.warning("a swap of %s was cut off before the new version was in place: putting the old one back", target)
    os.replace(aside, target)
    sync_dir(target.parent)
    return True


def repair_locked(target: Path, what: str) -> None:
    """`repair` a factory swap of `target` (`aside_of`) for a reader, such as `puf verify` of a
    factory's bundle: under the writers' lock (`lock_of`; a PufError naming `what` while a
    writer holds it), so never in the middle of a writer's swap."""
    from edge_app.folder_lock import exclusive

    target = Path(target)
    if not target.exists() and aside_of(target).is_dir():
        with exclusive(lock_of(target), what):
            repair(target, aside_of(target))


def sync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames, new files) to the storage."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace the file `path` with UTF-8 `text` whole or not at all: written beside it under a
    hidden name, synced, and renamed over it (a kill leaves the old file or the new one, never
    half of one; the file gets the usual permissions, not a temporary file's owner-only ones)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        sync_dir(path.parent)
    except OSError as error:
        raise PufError(f"cannot save {path}: {error.strerror or error}") from None
