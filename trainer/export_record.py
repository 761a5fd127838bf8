"""The factory account's record of the bundles `puf export` wrote, kept outside every bundle.

    ~/.local/state/puf/exports/SHA256.json     one file per exported manifest
    ($PUF_EXPORTS, else $XDG_STATE_HOME/puf/exports, else that)

An exported bundle is not signed (exporting needs no key), so its first signature, at its
first enrollment, must rest on something else: that this account exported exactly that
manifest. SHA256 is the digest of the manifest's signed bytes (`edge_app.signing.canonical_bytes`);
the manifest lists the digest of every model file, so the record covers the whole bundle. A
digest written into the bundle itself would prove nothing (whoever edits the manifest
recomputes it); this folder is the account's own (mode 700), out of reach of anyone who can
only write to the bundle's folder, a shared disk or a USB stick. An export and its first
enrollment therefore run as the same account, or share this folder ($PUF_EXPORTS). The
model shipped with puf, installed with its code, needs no record.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from edge_app.atomic_write import write_atomic
from edge_app.bundle import Check, open_bundle
from edge_app.bundle_format import utc_text
from edge_app.errors import PufError
from edge_app.runtime import shipped_bundle
from edge_app.signing import canonical_bytes


def exports_dir() -> Path:
    if os.environ.get("PUF_EXPORTS"):
        return Path(os.environ["PUF_EXPORTS"])
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "puf" / "exports"


def _entry(manifest: dict) -> Path:
    return exports_dir() / f"{hashlib.sha256(canonical_bytes(manifest)).hexdigest()}.json"


def record_export(manifest: dict, bundle: Path) -> None:
    """Record that this account exported `manifest` (the JSON written) to `bundle`."""
    folder = exports_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise PufError(f"cannot make the record of exports {folder}: {error.strerror or error}") from None
    write_atomic(_entry(manifest), json.dumps({"bundle": str(bundle), "time": utc_text(datetime.now(UTC))}) + "\n")


def was_exported(manifest: dict) -> bool:
    """Whether this account's record holds exactly this manifest (the JSON as written), or it
    is the manifest of the model shipped with puf (installed with its code, and trusted as
    much: `edge_app.runtime.shipped_bundle`)."""
    return _entry(manifest).is_file() or _is_shipped(manifest)


def _is_shipped(manifest: dict) -> bool:
    try:
        shipped = open_bundle(shipped_bundle(), Check.FORMAT).manifest
    except PufError:
        return False
    return canonical_bytes(shipped.to_dict()) == canonical_bytes(manifest)
