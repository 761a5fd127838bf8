"""Argument types the verbs share (`type=` of `argparse`): a grid as COLSxROWS, a point as X,Y
in mm, finite and positive numbers, counts, output paths, the labels to revoke. A bad value is
argparse's usage error (exit status 2), naming the option and the form expected, before any
work starts.

Only the standard library: the verb modules import this when the command is assembled.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

# The most columns or rows of a grid (fields of a batch, labels of a field): far beyond any
# real batch, small enough that what is planned for it fits in memory.
MAX_GRID_SIDE = 1000


def grid(text: str) -> tuple[int, int]:
    """COLSxROWS, e.g. ``4x3``: columns and rows, each 1 to MAX_GRID_SIDE."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not COLSxROWS, e.g. 4x3")
    cols, rows = int(match[1]), int(match[2])
    if not (1 <= cols <= MAX_GRID_SIDE and 1 <= rows <= MAX_GRID_SIDE):
        raise argparse.ArgumentTypeError(f"{text!r}: columns and rows must each be 1 to {MAX_GRID_SIDE}")
    return cols, rows


def point_mm(text: str) -> tuple[float, float]:
    """X,Y in mm, e.g. ``-25,-5``: two finite numbers."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y in mm, e.g. -25,-5") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"{text!r}: X and Y must be finite numbers")
    return x, y


def nonempty(text: str) -> str:
    """Any text but the empty one (a name, a source)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value: give one")
    return text


def finite(text: str) -> float:
    """A finite number (not nan, not inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive(text: str) -> float:
    """A finite number above 0 (a size, a speed, a power)."""
    value = finite(text)
    _require(value > 0, text, "must be above 0")
    return value


def probability(text: str) -> float:
    """A rate or a share strictly between 0 and 1 (a false-accept rate)."""
    value = finite(text)
    _require(0 < value < 1, text, "must lie between 0 and 1")
    return value


def non_negative(text: str) -> float:
    """A finite number of 0 or more (a distance allowed, a margin)."""
    value = finite(text)
    _require(value >= 0, text, "must be 0 or more")
    return value


def positive_int(text: str) -> int:
    """A whole number of 1 or more (processes, a size in px)."""
    value = _whole(text)
    _require(value >= 1, text, "must be 1 or more")
    return value


def int_up_to(maximum: int) -> Callable[[str], int]:
    """A whole number of 1 to `maximum` (a size whose square is allocated, say)."""
    def bounded(text: str) -> int:
        value = positive_int(text)
        _require(value <= maximum, text, f"must be at most {maximum}")
        return value

    return bounded


def non_negative_int(text: str) -> int:
    """A whole number of 0 or more (0 meaning none)."""
    value = _whole(text)
    _require(value >= 0, text, "must be 0 or more")
    return value


def _require(holds: bool, text: str, what: str) -> None:
    """argparse's usage error "TEXT WHAT" unless the value `holds`."""
    if not holds:
        raise argparse.ArgumentTypeError(f"{text!r} {what}")


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def nonempty_path(text: str) -> Path:
    """A file or folder, not the empty path (which would be the working folder): for a verb that
    says itself what is wrong with the file (`output_path` checks a place to write first)."""
    return Path(nonempty(text))


def output_path(text: str) -> Path:
    """A file or folder to write: not empty, and its nearest existing folder one where files can
    be made (tried with a nameless temporary file: as root, permissions say nothing of /proc or a
    read-only disk). Folders missing below it are made by the verb."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a file or folder to write")
    path = Path(text)
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if existing != path.absolute() and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {existing} is a file, not a folder")
    folder = existing if existing.is_dir() else existing.parent
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: cannot write in {folder} ({error.strerror or error})") from None
    return path


def revocation_arguments(parser: argparse.ArgumentParser) -> None:
    """The labels to revoke and why (`edge_app.revocations.label_ids` reads them)."""
    parser.add_argument("label_ids", nargs="*", metavar="LABEL_ID", help="the labels to revoke")
    parser.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                        help="also the label ids in FILE, one a line (# starts a comment)")
    parser.add_argument("--reason", default="revoked", help='why, kept in the list and shown by devices '
                                                            '(default: "revoked")')
