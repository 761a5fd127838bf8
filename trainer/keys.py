"""The factory's signing keys: make a pair, sign a bundle manifest (the device only verifies:
`edge_app.signing`).

    puf keygen keys/factory     ->  keys/factory.key (private, mode 600), keys/factory.pub

Copy the ``.pub`` file into each device's trusted keys folder; keep the ``.key`` file on
the factory machine that enrolls and evaluates bundles.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edge_app.bundle_format import Manifest
from edge_app.errors import PufError
from edge_app.signing import (
    default_trusted_keys_dir,
    key_id,
    load_trusted_keys,
    raw_public_bytes,
    signature_for,
    verify_manifest,
)
from edge_app.signing import load_private_key as load_private_key  # the verbs' and tests' name for it


def generate_keypair(prefix: Path, overwrite: bool = False) -> tuple[Path, Path, str]:
    """Write PREFIX.key and PREFIX.pub; returns their paths and the key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    prefix = Path(prefix)
    private_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise PufError(f"{path} exists; a key pair is never overwritten silently (give --force)")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_pair({private_path: (private, 0o600), public_path: (public, 0o644)})
    return private_path, public_path, key_id(raw_public_bytes(key.public_key()))


def _write_pair(files: dict[Path, tuple[bytes, int]]) -> None:
    """Write every file in full (new inodes with their own modes, flushed to the disk) before
    renaming any into place: a failed write (a full disk) leaves the old files or none, never
    an empty key that blocks the re-run, and an old world-readable key never lends its mode."""
    temporaries: list[str] = []
    try:
        for path, (data, mode) in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            temporaries.append(temporary)
            with os.fdopen(descriptor, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for temporary, path in zip(temporaries, files, strict=True):
            os.replace(temporary, path)
    except OSError as error:
        raise PufError(f"cannot write {' and '.join(map(str, files))}: {error.strerror or error} (nothing "
                       "half-written is left)") from None
    finally:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)


def sign_manifest(manifest: dict, private_key) -> dict:
    """The manifest with its "signature" entry set (a new dict)."""
    signed = {k: v for k, v in manifest.items() if k != "signature"}
    signed["signature"] = signature_for(signed, private_key)
    return signed


def check_before_signing(manifest: Manifest, private_key, trusted_keys: Path | None = None,
                         where: str = "manifest.json") -> str | None:
    """Refuse to sign a new version of a bundle whose manifest no one we trust signed: a
    re-signature would vouch for whatever was edited in it (a lowered threshold). The
    manifest must verify against the signing key itself or a trusted key (`trusted_keys`,
    else the default trusted keys folder when there is one); only a bundle as `puf export`
    writes it (unsigned, no labels enrolled yet) may be signed for the first time. Returns
    the id of the key that signed it before (None: the first signature)."""
    if manifest.signature is None and manifest.shards is None:
        return None
    if manifest.signature is None:
        raise PufError(f"not signed: {where} is unsigned but already holds enrolled labels, so nothing shows it was "
                       "not altered; enroll into a fresh bundle from puf export, or one signed by a trusted key")
    own = private_key.public_key()
    trusted = {key_id(raw_public_bytes(own)): own}
    if trusted_keys is not None:
        trusted.update(load_trusted_keys(trusted_keys))
    elif any(default_trusted_keys_dir().glob("*.pub")):
        trusted.update(load_trusted_keys())
    try:
        return verify_manifest(manifest.to_dict(), trusted, where)
    except PufError as error:
        raise PufError(f"not signed: the bundle was not signed by this key or a trusted one ({error}); "
                       "re-signing it would vouch for whatever was changed") from None


def trusted_keys_argument(parser) -> None:
    """The option of every verb that re-signs a bundle: the keys whose signature on it
    `check_before_signing` accepts."""
    parser.add_argument("--trusted-keys", type=Path,
                        help="folder of *.pub keys besides --key's own whose signature on the bundle is accepted "
                             "before re-signing (default: $PUF_TRUSTED_KEYS, else ~/.config/puf/trusted_keys, "
                             "when it exists)")
