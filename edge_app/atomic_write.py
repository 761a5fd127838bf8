"""Files replaced whole or not at all, the one way this project writes them.

    with replacing(path, suffix=".npz") as tmp:   # for a writer that wants a path
        np.savez(tmp, ...)
    write_atomic(path, text_or_bytes)              # the common case

The new content goes to a hidden temporary file beside `path` (same folder, so the rename
is atomic), which is flushed to the storage, renamed over `path`, and the folder flushed
too: a kill or a power cut leaves the old file or the new one, never half of one, and a
failed write (a full disk) leaves no temporary file behind, nor does a killed one once the
file is written again. `os.replace` is banned
everywhere else (ruff's banned-api, pyproject.toml), so no writer can skip a step.
"""

from __future__ import annotations

import glob
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_app.errors import PufError

_HOST = socket.gethostname()  # a shared folder's other hosts' writers are never taken for dead ones


def sync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames, new files) to the storage."""
    _sync(folder)


def _sync(path: Path) -> None:
    """Flush a file's (or a folder's) content to the storage, whoever wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path, suffix: str = "", mode: int | None = None, exclusive: bool = False) -> Iterator[Path]:
    """Yield the temporary file to write in place of `path` (made empty, its name ending in
    `suffix` for writers that choose a format by name); on a clean exit it replaces `path`.

    `mode` gives the file exactly these permissions before anything is written (a private
    key is never readable by others, not even for a moment); without it the file gets the
    usual ones, not a temporary file's owner-only ones. `exclusive` puts the file in place
    only if `path` does not exist yet (FileExistsError otherwise): a link, not a rename.
    OSError is the caller's to word; the temporary file is gone by then."""
    path = Path(path)
    _remove_dead_writers_files(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{_HOST}.tmp{suffix}")  # one per writer
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(tmp, flags, 0o600 if mode is not None else 0o666)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        yield tmp
        _sync(tmp)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    sync_dir(path.parent)


def _remove_dead_writers_files(path: Path) -> None:
    """Remove the temporary files of `path` whose writer was killed (its process on this host
    is gone): a run resumed after a kill -9 leaves nothing behind."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*-*.{glob.escape(_HOST)}.tmp*"):
        pid = stale.name[len(path.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Replace the file `path` with `data` (text as UTF-8) whole or not at all (`replacing`);
    PufError "cannot save PATH: why"."""
    try:
        with replacing(path, mode=mode) as tmp:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as error:
        raise PufError(f"cannot save {path}: {error.strerror or error}") from None
