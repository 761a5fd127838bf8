"""The one exception type users see as a message instead of a traceback."""

from __future__ import annotations

import errno
from importlib.util import find_spec
from pathlib import Path


class PufError(Exception):
    """A problem with the user's input or environment, explained in plain words.

    The `puf` command prints it as ``puf VERB: error: MESSAGE`` and exits with status 2;
    anything else that escapes is a bug: `puf` prints its traceback and exits with
    `edge_app.cli.EXIT_CRASH`.
    """


class BundleRefused(PufError):
    """A bundle the device will not install: unsigned or signed by a key it does not trust,
    damaged, older than the one it has, or forgetting a revocation it has seen. The bundle in
    use stays in use (`edge_app.device_store.DeviceStore.install_bundle`)."""


class CaptureUnusable(PufError):
    """A photo that cannot be verified at all (unreadable, truncated, too large): one
    ``unreadable`` verdict for it, and the other photos still checked (`puf verify`)."""


class HardwareStopped(PufError):
    """A device (the laser, a camera) stopped partway; what it did and how to go on are in
    the message (`fabrication.laser.LaserJobStopped` says where a job resumes)."""


class NoTrustedKeys(PufError):
    """The device's folder of trusted keys is missing or holds no key: it has not been set up
    (`puf device trust`), which the app says in an inspector's words (`edge_app.signing`)."""


def require_module(module: str, extra: str) -> None:
    """Fail with an install hint when an optional dependency is missing."""
    if find_spec(module) is None:
        raise PufError(
            f"this needs the Python module {module!r}, which is not installed; "
            f"install the '{extra}' extra: pip install 'puf-labels[{extra}]'"
        )


def cannot_write(path: Path, error: OSError, kept: str) -> PufError:
    """A failed write in words for a job that resumes: what is `kept`, and on a full disk
    (or quota, or file size limit) where to free space."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = f"free space on the disk holding {path.parent} and run" if full else "run"
    return PufError(f"cannot write {path} ({error.strerror or error}); {kept}: {hint} the same command "
                    "again to resume")
