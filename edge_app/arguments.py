"""Argument types the verbs share (`type=` of `argparse`): a grid as COLSxROWS, a point as X,Y
in mm. A bad value is argparse's usage error, naming the option and the form expected. And the
labels to revoke, as `puf revoke` and `puf registry revoke` take them.

Only the standard library: the verb modules import this when the command is assembled.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def grid(text: str) -> tuple[int, int]:
    """COLSxROWS, e.g. ``4x3``: columns and rows, each at least 1."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not COLSxROWS, e.g. 4x3")
    cols, rows = int(match[1]), int(match[2])
    if cols < 1 or rows < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: columns and rows must be >= 1")
    return cols, rows


def point_mm(text: str) -> tuple[float, float]:
    """X,Y in mm, e.g. ``-25,-5``."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y in mm, e.g. -25,-5") from None
    return x, y


def revocation_arguments(parser: argparse.ArgumentParser) -> None:
    """The labels to revoke and why (`edge_app.revocations.label_ids` reads them)."""
    parser.add_argument("label_ids", nargs="*", metavar="LABEL_ID", help="the labels to revoke")
    parser.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                        help="also the label ids in FILE, one a line (# starts a comment)")
    parser.add_argument("--reason", default="revoked", help='why, kept in the list and shown by devices '
                                                            '(default: "revoked")')
