"""Setting a device up from its shell: trusting a factory's public key (`puf device trust`), and
the bundle and keys the device's own commands use unless told otherwise.

A device accepts only bundles signed by a key in its trusted-keys folder
(`edge_app.device_store.trusted_keys_dir`), so trusting a key is the step that decides what the
device will ever believe. The file is checked before it is copied in: an Ed25519 public key in
PEM, never a private key (which must stay at the factory), written whole, under a name no other
trusted key holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge_app.atomic_write import write_atomic
from edge_app.device_store import BUNDLE, device_home, trusted_keys_dir
from edge_app.errors import PufError
from edge_app.json_files import read_at_most
from edge_app.signing import key_id, load_public_key, public_pem, raw_public_bytes
from edge_app.trust_root import ROOT_LIST

# A PEM Ed25519 public key is 113 bytes: a file far larger is not one (and is not read whole).
MAX_KEY_BYTES = 16 * 1024


@dataclass(frozen=True)
class Trusted:
    key_id: str
    path: Path  # the trusted copy
    added: bool  # False: the key was trusted already


def trust_key(source: Path, folder: Path) -> Trusted:
    """Copy the public key in `source` into the trusted-keys `folder`; PufError, with nothing
    written, for a file that is not an Ed25519 public key, a private key, or a name another
    trusted key holds. A key trusted already (under any name) is left as it is."""
    source = Path(source)
    data = read_at_most(source, MAX_KEY_BYTES, "public key")  # a PEM public key is about 113 bytes
    if b"PRIVATE KEY" in data:
        raise PufError(f"{source} is a private key: a device needs only the factory's public key (the .pub file); "
                       "keep the private key at the factory (and make a new pair if it has been copied around)")
    key = load_public_key(source)
    new_id = key_id(raw_public_bytes(key))
    for path in sorted(folder.glob("*.pub")) if folder.is_dir() else []:
        if key_id(raw_public_bytes(load_public_key(path))) == new_id:
            return Trusted(new_id, path, False)
    target = folder / (source.name if source.suffix == ".pub" else f"{source.name}.pub")
    if target.exists() or target.is_symlink():
        raise PufError(f"another key is already trusted as {target}: copy this one under another name (rename "
                       f"{source}), or remove {target} first if it is no longer to be trusted")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PufError(f"cannot make the trusted-keys folder {folder}: {error.strerror or error}") from None
    write_atomic(target, public_pem(key).decode("ascii"))  # the key alone, whatever else the source held
    return Trusted(new_id, target, True)


def verify_sources(bundle: Path | None, trusted_keys: Path | None) -> tuple[Path, Path, Path]:
    """The bundle, trusted-keys folder and held root list `puf verify` uses: those given; else
    $PUF_BUNDLE, else the bundle installed on this device (`puf device install`), and the device's
    trusted keys; the device's root list always (a newer one than a bundle carries still counts).
    Only read: the device's folder is neither made nor repaired here (the app may be updating it)."""
    home = device_home()
    keys = trusted_keys or trusted_keys_dir(home)
    held = home / ROOT_LIST
    if bundle is not None:
        return bundle, keys, held
    if os.environ.get("PUF_BUNDLE"):
        return Path(os.environ["PUF_BUNDLE"]), keys, held
    installed = home / BUNDLE
    if not installed.is_dir():
        raise PufError(f"no bundle is installed on this device ({installed}): install the factory's with "
                       "puf device install BUNDLE, or name one with --bundle")
    return installed, keys, held
