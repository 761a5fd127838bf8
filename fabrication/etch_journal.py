"""The send journal of `puf etch`: which job lines may be on their way to the controller.

GRBL runs every line it has received, even after the host that sent it died: the lines in
its receive and planner buffers are already the machine's. So what must survive a kill of
`puf etch` is not what the controller acknowledged but what was *written* to it. Before a
job line is written, its number is appended here and flushed to disk (fdatasync); only then
is it written. After a kill, every journalled line but the last was written (and so runs
to its end once the machine is Idle); the last may or may not have been: the one uncertain
line.

A galvo runs the job in units (a label's list at a time) and records a unit's first line
before its list is written and ``done N`` once the board reported it finished: a unit
begun and not done is the uncertain one, skipped by the resume.

One journal belongs to one run, named by a token the etch state also holds, so a journal
left by an older run is never taken for the current one. A record torn by a power cut is
ignored: its line was not written yet.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_app.atomic_write import sync_dir
from edge_app.errors import PufError


class JournalError(PufError):
    """The journal could not be written: the line was not sent, the ones before it may run."""


class SendJournal:
    """Append-only, fsynced record of the job lines about to be written to the controller."""

    def __init__(self, path: Path, token: str) -> None:
        """Start the journal of run `token` (an older run's journal is replaced)."""
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            os.write(self._fd, f"run {token}\n".encode())
            os.fsync(self._fd)
            sync_dir(path.parent)
        except OSError as error:
            raise PufError(f"cannot write the etch journal {path}: {error}") from None

    def __call__(self, line: int) -> None:
        """Record that job line `line` is about to be written; returns once it is on disk."""
        self._append(b"%d\n" % line)

    def _append(self, record: bytes) -> None:
        try:
            os.write(self._fd, record)
            os.fdatasync(self._fd)
        except OSError as error:
            raise JournalError(f"cannot write the etch journal {self.path}: {error}; nothing more "
                               "was sent, and the controller runs what it holds") from None

    def done(self, line: int) -> None:
        """Record that the unit starting at job line `line` was finished by the board."""
        self._append(b"done %d\n" % line)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> SendJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def last_sent(path: Path, token: str) -> int | None:
    """The last job line run `token` journalled (None: it wrote no job line)."""
    return _last(path, token, done=False)


def last_done(path: Path, token: str) -> int | None:
    """The first line of the last unit run `token` journalled as finished (None: none)."""
    return _last(path, token, done=True)


def _last(path: Path, token: str, done: bool) -> int | None:
    try:
        records = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PufError(f"cannot read the etch journal {path}: {error}") from None
    complete = records[:-1]  # what follows the last newline is a torn record, or nothing
    if not complete or complete[0] != f"run {token}".encode():
        return None  # an older run's journal: this run was killed before it wrote any line
    records = [r for r in complete[1:] if r.startswith(b"done ") == done]
    try:
        return int(records[-1].removeprefix(b"done ")) if records else None
    except ValueError:
        raise PufError(f"the etch journal {path} is damaged ({records[-1][:40]!r}): choose where to "
                       "go on with --from-line after checking the film") from None

