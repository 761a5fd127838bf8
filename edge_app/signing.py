"""Ed25519 signatures over a JSON document: a bundle manifest, checked against the keys a
device trusts, and a device's journal sync file (`edge_app.journal_sync`), checked against
the key the central registry holds for that device.

The signature covers the document's *canonical bytes*: the document without its
``"signature"`` entry, as JSON with sorted keys, no spaces and ASCII escapes (Python's
float repr round-trips, so reading and re-serialising a document gives the same bytes).
The manifest lists the sha256 of every other file in the bundle, so one signature covers
them all. The factory's keys are made and used in `trainer.keys`; a device's own key, which
signs only its journals, in `edge_app.device_key`.

Keys are files of the usual PEM encodings (``-----BEGIN PUBLIC KEY-----``, SubjectPublicKeyInfo;
``openssl pkey -pubout`` reads and writes them too). A device trusts the public keys in a
folder of ``*.pub`` files: ``$PUF_TRUSTED_KEYS``, else ``~/.config/puf/trusted_keys``.
A key is named by its id: the first 16 hex digits of the sha256 of its 32 raw bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

from edge_app.errors import NoTrustedKeys, PufError, require_module

ALGORITHM = "ed25519"


def canonical_bytes(document: dict) -> bytes:
    """The bytes a signature covers: the document (a manifest) minus its "signature" entry."""
    body = {key: value for key, value in document.items() if key != "signature"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (ValueError, RecursionError) as error:
        raise PufError(f"cannot be signed: {error}") from None
    return text.encode("ascii")


def signature_for(document: dict, private_key) -> dict:
    """The "signature" entry that signs `document` (its other entries) with `private_key`."""
    value = private_key.sign(canonical_bytes(document))
    return {"algorithm": ALGORITHM, "key_id": key_id(raw_public_bytes(private_key.public_key())),
            "value": base64.b64encode(value).decode("ascii")}


def signature_matches(document: dict, public_key) -> bool:
    """Whether the document's "signature" entry is `public_key`'s signature of its other entries."""
    return signature_holds(document.get("signature"), canonical_bytes(document), public_key)


def signature_holds(signature: object, data: bytes, public_key) -> bool:
    """Whether the "signature" entry `signature` is `public_key`'s signature of `data`."""
    from cryptography.exceptions import InvalidSignature

    if not isinstance(signature, dict):
        return False
    try:
        value = base64.b64decode(signature.get("value", ""), validate=True)
        public_key.verify(value, data)
    except (InvalidSignature, ValueError, TypeError, AttributeError):
        return False
    return True


def key_id(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def default_trusted_keys_dir() -> Path:
    if os.environ.get("PUF_TRUSTED_KEYS"):
        return Path(os.environ["PUF_TRUSTED_KEYS"])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "puf" / "trusted_keys"


def load_public_key(path: Path):
    """An Ed25519 public key from a PEM file; PufError naming the file otherwise."""
    require_module("cryptography", "device")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise PufError(f"cannot read the public key {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise PufError(f"{path} is not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PufError(f"{path} is not an Ed25519 public key")
    return key


def read_private_key(path: Path, what: str = "the signing key"):
    """An Ed25519 private key from an unencrypted PEM file that only its owner may read (as ssh
    demands of its keys); PufError naming the file otherwise."""
    require_module("cryptography", "device")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as error:
        raise PufError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if mode & 0o077:
        raise PufError(f"permissions {mode:04o} for {what} {path} are too open: a private key must be readable by "
                       f"its owner only (chmod 600 {path})")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise PufError(f"{path} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PufError(f"{path} is not an Ed25519 private key")
    return key


def raw_public_bytes(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public_key) -> bytes:
    """The public key as a ``.pub`` file holds it (PEM, SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_trusted_keys(folder: Path | None = None) -> dict:
    """Key id -> Ed25519 public key, for every ``*.pub`` file in `folder`."""
    folder = Path(folder) if folder is not None else default_trusted_keys_dir()
    setup = "trust the factory's public key on this device with: puf device trust FACTORY.pub"
    if not folder.is_dir():
        raise NoTrustedKeys(f"no trusted keys: {folder} is not a folder of *.pub files; {setup}")
    keys = {}
    for path in sorted(folder.glob("*.pub")):
        key = load_public_key(path)
        keys[key_id(raw_public_bytes(key))] = key
    if not keys:
        raise NoTrustedKeys(f"no trusted keys: {folder} holds no *.pub files; {setup}")
    return keys


def verify_manifest(manifest: dict, trusted: dict, where: str = "manifest.json") -> str:
    """Check the manifest's signature against the trusted keys; the signing key's id.

    PufError, naming `where`, when the manifest is unsigned, signed by a key that is not
    trusted, or its signature does not hold (the manifest was altered after signing)."""
    signature = manifest.get("signature")
    if not isinstance(signature, dict):
        raise PufError(f"{where} is not signed: this device accepts only signed bundles")
    if signature.get("algorithm") != ALGORITHM:
        raise PufError(f"{where} is signed with {signature.get('algorithm')!r}; only {ALGORITHM} is accepted")
    signer = signature.get("key_id")
    if not isinstance(signer, str) or signer not in trusted:
        raise PufError(f"{where} is signed by key {signer}, which this device does not trust "
                       f"(trusted: {', '.join(sorted(trusted))})")
    if not signature_matches(manifest, trusted[signer]):
        raise PufError(f"{where}: the signature does not match its contents (altered after signing, "
                       f"or signed by another key than {signer})")
    return signer
