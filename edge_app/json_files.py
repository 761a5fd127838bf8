"""JSON files a person may hand over (a layout, a pattern set): read with an error that
names the file and what it should have been, nested no deeper than any real file is (Python's
parser would recurse until it fails); written whole or not at all."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge_app.atomic_write import replacing
from edge_app.errors import PufError

T = TypeVar("T")

# Arrays and objects inside one another: far more than any file of ours has.
MAX_DEPTH = 100
# A string, or an unclosed one to the end: every match succeeds in one pass, so no quote inside
# a long unclosed string starts a second scan (which would make the check quadratic).
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def parse_json(text: str, what: str) -> object:
    """The JSON value of `text`; PufError "WHAT: not valid JSON: why" or "WHAT: nested N levels
    deep, ...", the depth checked before parsing."""
    try:
        return _parse(text)
    except PufError as error:
        raise PufError(f"{what}: {error}") from None


def _parse(text: str) -> object:
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0)
    if depth > MAX_DEPTH:
        raise PufError(f"nested {depth} levels deep, more than the {MAX_DEPTH} allowed")
    try:
        return json.loads(text)
    except ValueError as error:
        raise PufError(f"not valid JSON: {error}") from None


def read_json(path: Path, what: str) -> object:
    """The file's JSON value; PufError "no WHAT at PATH" or "cannot read the WHAT PATH: why"."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PufError(f"no {what} at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PufError(f"cannot read the {what} {path}: {error}") from None
    try:
        return _parse(text)
    except PufError as error:
        raise PufError(f"cannot read the {what} {path}: {error}") from None


def read_at_most(path: Path, limit: int, what: str) -> bytes:
    """The file's bytes, read no further than `limit` (a file far larger than a WHAT is not one,
    and is not read whole); PufError "cannot read the WHAT PATH: why" or "PATH is not a WHAT"."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as error:
        raise PufError(f"cannot read the {what} {path}: {error.strerror or error}") from None
    if len(data) > limit:
        raise PufError(f"{path} is not a {what}: it is over {limit} bytes")
    return data


def load_json(path: Path, what: str, parse: Callable[[object], T]) -> T:
    """`parse` of the file's JSON value; its PufError prefixed with the file's path."""
    data = read_json(path, what)
    try:
        return parse(data)
    except PufError as error:
        raise PufError(f"{path}: {error}") from None


def write_json(path: Path, data: object, indent: int | None = None,
               separators: tuple[str, str] | None = None) -> None:
    """Write whole or not at all (`replacing`); OSError is the caller's to word."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, separators=separators))
