"""One writer at a time: an advisory lock on a file, which the kernel lets go of when its
holder ends, however it ends (a killed job never leaves a stale lock behind).

    with exclusive(batch_dir / ".puf-segment.lock", f"the batch {batch_dir}"):
        ...   # a second process gets a PufError naming the holder's pid

The lock file stays in place (removing it would let a third process lock a new file while
the second still waits on the old one); it holds the pid of its last holder.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_app.errors import PufError


@contextmanager
def exclusive(lock_file: Path, what: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold `lock_file` for the block; a PufError saying `what` is busy when another process
    still holds it after `wait` seconds."""
    deadline = time.monotonic() + wait
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise PufError(f"cannot make the lock file {lock_file}: {error.strerror or error}") from None
    try:
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                raise PufError(f"{what} is in use by another process{f' (pid {holder})' if holder else ''}: "
                               "wait for it to finish (or stop it), then run again")
            time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
