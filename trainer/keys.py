"""The factory's signing keys: make a pair, sign a bundle manifest (the device only verifies:
`edge_app.signing`).

    puf keygen keys/factory     ->  keys/factory.key (private, mode 600), keys/factory.pub,
                                    keys/factory.key.signed.json (the key's signing record)

Copy the ``.pub`` file into each device's trusted keys folder; keep the ``.key`` file on
the factory machine that enrolls and evaluates bundles. A private key readable by anyone
but its owner is refused (as ssh refuses one).

A key signs only what it can trust (`check_before_signing`), and never a sequence more than
one above the highest it has signed: its signing record, beside it, keeps that highest
sequence (`sign_release`). A manifest whose sequence was raised (to 1000, say) would
otherwise be signed above every real bundle, and a device that installed it would refuse
every real update after it as older.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_app.atomic_write import replacing, write_atomic
from edge_app.bundle_format import Manifest, Release, utc_text
from edge_app.errors import PufError
from edge_app.json_files import read_json
from edge_app.signing import (
    default_trusted_keys_dir,
    key_id,
    load_trusted_keys,
    raw_public_bytes,
    read_private_key,
    signature_for,
    verify_manifest,
)
from edge_app.trust_root import LIST_TYPE, RootList, encode_key
from trainer.export_record import exports_dir, was_exported

MAX_VALID_DAYS = 36500  # a bundle's expiry: up to a century ahead (a datetime overflows past year 9999)


def check_valid_days(days: float) -> None:
    """A bundle's validity (--valid-days) is refused before any work, not at signing."""
    if not 0 < days <= MAX_VALID_DAYS:
        raise PufError(f"a bundle's validity must be more than 0 and at most {MAX_VALID_DAYS} days, got {days}")


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
    identity = key_id(raw_public_bytes(key.public_key()))
    _write_pair({private_path: (private, 0o600), public_path: (public, 0o644),
                 record_path(private_path): (_record_text(identity, 0, None).encode(), 0o644)})
    return private_path, public_path, identity


def _write_pair(files: dict[Path, tuple[bytes, int]]) -> None:
    """Write every file in full (new inodes with their own modes, flushed to the disk) before
    renaming any into place: a failed write (a full disk) leaves the old files or none, never
    an empty key that blocks the re-run, and an old world-readable key never lends its mode."""
    try:
        with ExitStack() as stack:  # every file written; then, leaving it, each renamed into place
            for path, (data, mode) in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(replacing(path, mode=mode)).write_bytes(data)
    except OSError as error:
        raise PufError(f"cannot write {' and '.join(map(str, files))}: {error.strerror or error} (nothing "
                       "half-written is left)") from None


@dataclass(frozen=True)
class SigningKey:
    """A private key and the file it was read from (beside which its signing record is kept)."""

    path: Path
    key: Any  # cryptography's Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(raw_public_bytes(self.key.public_key()))


def load_private_key(path: Path) -> SigningKey:
    """The key at `path`; a PufError when it cannot be read, is not Ed25519, or others may read it."""
    return SigningKey(Path(path), read_private_key(path))


def sign_manifest(manifest: dict, signer: SigningKey) -> dict:
    """The manifest with its "signature" entry set (a new dict). Commands sign through
    `sign_release`, which keeps the key's signing record."""
    signed = {k: v for k, v in manifest.items() if k != "signature"}
    signed["signature"] = signature_for(signed, signer.key)
    return signed


def record_path(private_key: Path) -> Path:
    """The signing record of the key at `private_key`: KEY.signed.json beside it."""
    private_key = Path(private_key)
    return private_key.with_name(private_key.name + ".signed.json")


def _record_text(identity: str, highest: int, bundle: str | None) -> str:
    return json.dumps({"key_id": identity, "highest_sequence": highest, "bundle": bundle,
                       "time": utc_text(datetime.now(UTC))}, indent=1) + "\n"


def highest_signed(signer: SigningKey) -> int:
    """The highest sequence the key's record says it signed (0: no record, a key made before
    records were kept); a PufError when the record is unreadable or another key's."""
    path = record_path(signer.path)
    if not path.exists():
        return 0
    data = read_json(path, "signing record")
    record = data if isinstance(data, dict) else {}
    highest = record.get("highest_sequence")
    if isinstance(highest, bool) or not isinstance(highest, int) or highest < 0:
        raise PufError(f"the signing record {path} is not a record of the highest sequence signed: restore it "
                       "from a backup (nothing was signed)")
    if record.get("key_id") != signer.key_id:
        raise PufError(f"the signing record {path} belongs to key {record.get('key_id')}, not to {signer.path} "
                       f"(key {signer.key_id}): nothing was signed")
    return highest


@contextmanager
def _record_held(signer: SigningKey) -> Iterator[None]:
    """The key's signing record for one signer at a time (a second waits: signing takes
    milliseconds), so that two signings never both read the same highest sequence."""
    lock = record_path(signer.path).with_suffix(".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise PufError(f"cannot make the lock file {lock}: {error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sign_release(manifest: dict, signer: SigningKey, proven: int, bundle: Path) -> dict:
    """`sign_manifest`, refused when the manifest's sequence is more than one above the
    highest this key has signed: the higher of its record and `proven` (the sequence of the
    bundle the new version is built on or replaces, when this key or a trusted one signed it:
    a key made before records were kept, or a new key taking over from a trusted one). The record is
    raised before the signed manifest is returned: a crash after it wastes a number, never
    loses one."""
    sequence = Release.of(manifest).sequence
    with _record_held(signer):
        recorded = highest_signed(signer)
        highest = max(recorded, proven)
        if sequence > highest + 1:
            raise PufError(f"sequence {sequence} is more than one above {highest}, the highest key {signer.key_id} "
                           f"has signed ({record_path(signer.path)}): a bundle whose sequence was raised would make "
                           "devices refuse every real update after it; nothing was signed")
        signed = sign_manifest(manifest, signer)
        if sequence > recorded:
            write_atomic(record_path(signer.path), _record_text(signer.key_id, sequence, str(bundle)))
    return signed


def check_before_signing(manifest: Manifest, signer: SigningKey, trusted_keys: Path | None = None,
                         where: str = "manifest.json") -> str | None:
    """Refuse to sign a new version of a bundle whose manifest no one we trust signed: a
    re-signature would vouch for whatever was edited in it (a lowered threshold). The
    manifest must verify against the signing key itself or a trusted key (`trusted_keys`,
    else the default trusted keys folder when there is one); an unsigned one is signed for
    the first time only when this account's record shows `puf export` wrote exactly it
    (`trainer.export_record`): unsigned and without shards is what anyone can make. Returns
    the id of the key that signed it before (None: the first signature)."""
    if manifest.signature is None and manifest.shards is not None:
        raise PufError(f"not signed: {where} is unsigned but already holds enrolled labels, so nothing shows it was "
                       "not altered; enroll into a fresh bundle from puf export, or one signed by a trusted key")
    if manifest.signature is None:
        if was_exported(manifest.to_dict()):
            return None
        raise PufError(f"not signed: {where} is unsigned and is not a manifest puf export wrote on this account "
                       f"(no record of it in {exports_dir()}), so nothing shows it was not altered; export the "
                       "bundle again (as the account that signs it, or with $PUF_EXPORTS shared)")
    own = signer.key.public_key()
    trusted = {signer.key_id: own}
    if trusted_keys is not None:
        trusted.update(load_trusted_keys(trusted_keys))
    elif any(default_trusted_keys_dir().glob("*.pub")):
        trusted.update(load_trusted_keys())
    try:
        return verify_manifest(manifest.to_dict(), trusted, where)
    except PufError as error:
        raise PufError(f"not signed: the bundle was not signed by this key or a trusted one ({error}); "
                       "re-signing it would vouch for whatever was changed") from None


# ---- root lists (`edge_app.trust_root`): made and signed offline, attached to what a key signs ----

def root_list_beside(signer: SigningKey) -> Path:
    """The root list a signing key's bundles carry: KEY.root.json beside the key (from `puf root attach`)."""
    return signer.path.with_name(signer.path.name + ".root.json")


def new_root_list(roots: list, keys: list, threshold: int, valid_days: float, version: int = 1) -> dict:
    """An unsigned root list of the public keys `roots` and `keys`, valid `valid_days` from now;
    every field checked as a device checks it."""
    check_valid_days(valid_days)
    document = {"type": LIST_TYPE, "version": version,
                "expires": utc_text(datetime.now(UTC) + timedelta(days=valid_days)), "threshold": threshold,
                "roots": {key_id(raw_public_bytes(k)): encode_key(k) for k in roots},
                "keys": {key_id(raw_public_bytes(k)): encode_key(k) for k in keys}, "signatures": []}
    RootList.from_dict(document, "the new root list")
    return document


def sign_root_list(document: dict, root: SigningKey, where: str) -> dict:
    """The root list with `root`'s signature added (a new dict; one it had from `root` replaced).
    The list is checked field by field first, and the signatures it has must hold: a root never
    signs beside a signature of another list."""
    listed = RootList.from_dict(document, where)
    for signature in listed.signatures:
        if signature["key_id"] == root.key_id:
            continue
        if signature["key_id"] in listed.roots:
            listed.signed_by({signature["key_id"]: listed.roots[signature["key_id"]]}, where)
    signatures = [s for s in listed.signatures if s["key_id"] != root.key_id]
    signed = dict(document, signatures=[*signatures, signature_for(listed.body(), root.key)])
    RootList.from_dict(signed, where)
    return signed


def check_attachable(path: Path, signer: SigningKey):
    """The root list at `path` read and checked as a device will: signed by enough of its own
    roots, not expired, naming `signer`; PufError otherwise (nothing is signed with a list that
    devices would refuse)."""
    listed = RootList.read(path)
    listed.require_signed(listed.roots, listed.threshold, "its own", str(path))
    if listed.expired():
        raise PufError(f"the root list {path} expired on {listed.expires:%Y-%m-%d %H:%M} UTC: sign a new version")
    if signer.key_id not in listed.keys:
        raise PufError(f"the root list {path} does not name the signing key {signer.key_id} ({signer.path}): devices "
                       "would refuse what it signs; add the key to the list and sign it again")
    return listed
