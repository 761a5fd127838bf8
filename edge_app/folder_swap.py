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

The factory's bundles have readers while they are swapped (`puf verify --bundle` beside a
running `puf enroll`), and two renames show a reader no folder, or half of one version and
half of the next. So the factory swaps versions instead (`swap_version`): the stable path is
a symlink to an immutable version folder in ``.NAME.versions/``, replaced by one rename(2)
of a new symlink; a reader resolves it once and reads everything from that version
(`current_version`), which stays for `KEEP_REPLACED_SECONDS` after it is replaced (time for a
reader that resolved it to open its files: `puf verify` loads the bundle, then its model). A folder at the stable
path (a bundle written before versions) becomes the first old version, atomically where the
kernel can exchange two paths. A writer locks and writes at `home_of(path)`, where links
are resolved: a symlink to a bundle is the same bundle, never a second one with its own lock.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from edge_app.atomic_write import sync_dir
from edge_app.errors import PufError
from edge_app.folder_lock import exclusive

log = logging.getLogger(__name__)

# A reader that saw a swap looking cut in half (`repair_locked`: a writer's own swap, seen in
# its last milliseconds) takes the writers' lock for milliseconds: a writer waits this long for
# it, and the reader as long for a writer finishing its swap, before either says the bundle is
# in use. A writer's whole update holds the lock longer, and a reader is still refused then.
BRIEF_HOLD_SECONDS = 2.0


def aside_of(target: Path) -> Path:
    """Where the factory's swap puts the old version of `target`: a hidden sibling."""
    target = Path(target)
    return target.with_name(f".{target.name}.old")


def lock_of(target: Path) -> Path:
    """The lock file of the factory's writers of `target`: a hidden sibling (inside, it would
    be replaced with the folder)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def versions_of(target: Path) -> Path:
    """The folder holding the factory's versions of `target` (`swap_version`): a hidden sibling."""
    target = Path(target)
    return target.with_name(f".{target.name}.versions")


def pending_of(target: Path) -> Path:
    """Where `swap_version` makes the next link (or parks the old folder) before its rename."""
    target = Path(target)
    return target.with_name(f".{target.name}.next")


_VERSIONS = re.compile(r"\..+\.versions")
MAX_LINKS = 40  # as the kernel's own limit
KEEP_REPLACED_SECONDS = 60  # a replaced version stays this long for the readers that resolved to it


def home_of(path: Path) -> Path:
    """The path a folder is locked and written at: its folders resolved and its symlinks
    followed (a link to a bundle is that bundle), up to the stable path itself, the link to a
    version folder (`swap_version`)."""
    path = Path(os.path.abspath(path))
    for _ in range(MAX_LINKS):
        path = path.parent.resolve() / path.name
        if not path.is_symlink() or _VERSIONS.fullmatch(Path(os.readlink(path)).parent.name):
            return path
        path = path.parent / os.readlink(path)
    raise PufError(f"{path}: more than {MAX_LINKS} symbolic links in a row")


def current_version(path: Path) -> Path:
    """The folder to read `path` from: its current version folder when `path` leads to one
    (read everything from it: the stable path may move on meanwhile), else `path` itself."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: its readers say there is no bundle
        return Path(path)
    return real if _VERSIONS.fullmatch(real.parent.name) else Path(path)


def swap_version(new: Path, target: Path) -> Path:
    """Make the finished folder `new` the current version of `target` (a stable path, as
    `home_of` gives it) by one rename of a symlink; returns the version folder. The version it
    replaces stays for the readers still reading it (`_prune`). On a file system
    without symlinks (a FAT stick) it falls back to `swap_in`'s two renames."""
    new, target = Path(new), Path(target)
    versions, pending = versions_of(target), pending_of(target)
    _remove(pending)  # a link or a parked old folder a crash left
    version = versions / f"v{secrets.token_hex(6)}"
    try:
        os.symlink(f"{versions.name}/{version.name}", pending)
    except OSError:
        swap_in(new, target, aside_of(target))
        shutil.rmtree(aside_of(target), ignore_errors=True)
        return target
    versions.mkdir(exist_ok=True)
    os.rename(new, version)
    sync_dir(versions)
    if target.is_dir() and not target.is_symlink():  # written before versions: it becomes the old version
        os.utime(_retire(target, pending, versions / f"v{secrets.token_hex(6)}"))
    else:
        replaced = target.resolve() if target.is_symlink() else None
        if replaced is not None and replaced.parent == versions and replaced.is_dir():
            os.utime(replaced)  # when it stopped being current: `_prune` counts from then
        os.replace(pending, target)
    sync_dir(target.parent)
    _prune(versions, version)
    return version


def _prune(versions: Path, current: Path) -> None:
    """Remove the versions replaced more than `KEEP_REPLACED_SECONDS` ago, and those a crash
    left unfinished (never current: counted from when they were written)."""
    oldest = time.time() - KEEP_REPLACED_SECONDS
    for folder in versions.iterdir():
        if folder.name != current.name and folder.lstat().st_mtime < oldest:
            _remove(folder)


def _retire(target: Path, link: Path, old: Path) -> Path:
    """Put `link` at `target` in place of the folder there, which becomes `old`: in one step
    where the kernel exchanges two paths; else by two renames, which `repair` completes."""
    if _exchange(link, target):
        os.rename(link, old)  # the folder, now at `link`
    else:
        os.rename(target, old)
        os.replace(link, target)
    return old


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` atomically (Linux renameat2 RENAME_EXCHANGE); False where the
    C library or the file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not here
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _is_link_to_a_folder(path: Path) -> bool:
    return path.is_symlink() and path.is_dir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    """Put the old version back when a crash left it aside and nothing at `target`, or put
    `swap_version`'s new link in place when a crash cut its two-rename fallback in half;
    returns whether it did."""
    target, aside = Path(target), Path(aside)
    if target.is_symlink() or target.exists():
        return False
    if _is_link_to_a_folder(pending_of(target)):
        log.warning("a swap of %s was cut off before the new version was in place: putting it in place", target)
        os.replace(pending_of(target), target)
        sync_dir(target.parent)
        return True
    if not aside.is_dir():
        return False
    log.warning("a swap of %s was cut off before the new version was in place: putting the old one back", target)
    os.replace(aside, target)
    sync_dir(target.parent)
    return True


def repair_locked(target: Path, what: str) -> None:
    """`repair` a factory swap of `target` (`aside_of`) for a reader, such as `puf verify` of a
    factory's bundle: under the writers' lock (`lock_of`), so never in the middle of a writer's
    swap; a PufError naming `what` when a writer still holds it after `BRIEF_HOLD_SECONDS`."""
    target = home_of(target)
    if not target.exists() and (aside_of(target).is_dir() or _is_link_to_a_folder(pending_of(target))):
        with exclusive(lock_of(target), what, wait=BRIEF_HOLD_SECONDS):
            repair(target, aside_of(target))
