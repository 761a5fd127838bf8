"""A root of trust, as TUF has it: offline root keys certify the keys that sign bundles.

The root list (``root.json``) names, for a version and until an expiry, the root keys, how
many of them must sign (the threshold, k of n), and the signing keys a device may trust::

    {"type": "puf-root-list", "version": 2, "expires": "2027-12-07T10:00:00Z", "threshold": 2,
     "roots": {"ROOT_ID": "BASE64 RAW KEY", ...}, "keys": {"KEY_ID": "BASE64 RAW KEY", ...},
     "signatures": [{"algorithm": "ed25519", "key_id": "ROOT_ID", "value": "..."}, ...]}

Each signature covers the list's canonical bytes without "signatures" (`edge_app.signing`).
The list travels in the bundle folder beside the manifest, not listed in it: it decides whom
the manifest's signature may come from, so it is checked first, on its own root signatures,
and a bundle signer's say over it would be a circle.

A device that trusts roots keeps them in TRUSTED_KEYS/root/*.pub (`puf device trust --root`)
and the newest list it accepted beside its bundle (HOME/root.json, `edge_app.device_store`).
A list is accepted when it is the one held, or newer and signed by k of the held list's roots
(the device's own roots before it holds one) and by k of its own; an older list, an expired
one, or one with too few root signatures is refused, and so is the bundle carrying it. Root
rotation is a newer list, signed by k of the old roots, that names new ones. A device with
no root keys trusts its folder's ``*.pub`` keys, as before.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_app.atomic_write import write_atomic
from edge_app.bundle_format import MAX_SEQUENCE, parse_time
from edge_app.errors import NoTrustedKeys, PufError
from edge_app.json_files import read_at_most
from edge_app.signing import (
    ALGORITHM,
    canonical_bytes,
    default_trusted_keys_dir,
    key_id,
    load_public_key,
    load_trusted_keys,
    raw_public_bytes,
    signature_holds,
)

ROOT_LIST = "root.json"  # in a bundle folder, and beside the device's installed bundle
ROOT_KEYS = "root"  # the device's root keys: a folder of *.pub files in its trusted-keys folder
ROOT_THRESHOLD = "threshold"  # in ROOT_KEYS: how many of them must sign the first list (absent: all)
LIST_TYPE = "puf-root-list"
FIELDS = {"type", "version", "expires", "threshold", "roots", "keys", "signatures"}
MAX_KEYS = 64  # roots, and signing keys: a short list
MAX_BYTES = 64 * 1024


def _public_key(text: object, what: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise PufError(f"{what} is not a base64 Ed25519 public key (32 bytes)") from None


def encode_key(public_key) -> str:
    return base64.b64encode(raw_public_bytes(public_key)).decode("ascii")


def _keys(data: dict, field: str, where: str) -> dict:
    """A "roots" or "keys" entry: key id -> public key, each id the id of its key."""
    value = data.get(field)
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_KEYS:
        raise PufError(f"{where}: {field} must map 1 to {MAX_KEYS} key ids to keys")
    keys = {}
    for identity, text in value.items():
        key = _public_key(text, f"{where}: {field} {identity}")
        if key_id(raw_public_bytes(key)) != identity:
            raise PufError(f"{where}: {field} {identity} is the id of another key than the one given with it "
                           f"({key_id(raw_public_bytes(key))})")
        keys[identity] = key
    return keys


@dataclass(frozen=True)
class RootList:
    """A root list read and checked field by field (its signatures checked by `accept`)."""

    version: int
    expires: datetime
    threshold: int
    roots: dict  # root key id -> Ed25519 public key
    keys: dict  # signing key id -> Ed25519 public key
    signatures: tuple  # the "signature" entries, one per root at most
    document: dict  # the list as read

    @classmethod
    def from_dict(cls, data: object, where: str) -> RootList:
        if not isinstance(data, dict):
            raise PufError(f"{where} is not a root list: not a JSON object")
        unknown = sorted(set(data) - FIELDS)
        if unknown:
            raise PufError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} in a root list")
        if data.get("type") != LIST_TYPE:
            raise PufError(f"{where} is not a root list: type must be {LIST_TYPE!r}, got {data.get('type')!r}")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_SEQUENCE:
            raise PufError(f"{where}: version must be a whole number from 1 to {MAX_SEQUENCE}, got {version!r}")
        expires = parse_time(data.get("expires"), f"{where}: expires")
        roots, keys = _keys(data, "roots", where), _keys(data, "keys", where)
        threshold = data.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= len(roots):
            raise PufError(f"{where}: threshold must be a whole number from 1 to {len(roots)} (its roots), "
                           f"got {threshold!r}")
        signatures = data.get("signatures", [])
        if not isinstance(signatures, list) or len(signatures) > MAX_KEYS * 2:
            raise PufError(f"{where}: signatures must be a list of at most {MAX_KEYS * 2} signatures")
        seen = set()
        for signature in signatures:
            if not isinstance(signature, dict) or set(signature) != {"algorithm", "key_id", "value"} \
                    or signature["algorithm"] != ALGORITHM:
                raise PufError(f"{where}: a signature must be {{algorithm: {ALGORITHM}, key_id, value}}, got "
                               f"{str(signature)[:80]}")
            if signature["key_id"] in seen:
                raise PufError(f"{where} is signed twice by root {signature['key_id']}: each root counts once")
            seen.add(signature["key_id"])
        return cls(version, expires, threshold, roots, keys, tuple(signatures), data)

    @classmethod
    def read(cls, path: Path) -> RootList:
        path = Path(path)
        data = read_at_most(path, MAX_BYTES, "root list")
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise PufError(f"{path} is not a root list: {error}") from None
        return cls.from_dict(document, str(path))

    def body(self) -> dict:
        """What the root signatures cover: the list without its signatures."""
        return {k: v for k, v in self.document.items() if k != "signatures"}

    def signed_by(self, roots: dict, where: str) -> set[str]:
        """The ids of `roots` whose signature on the list holds; PufError when one of them does
        not (the list was altered after that root signed it)."""
        data = canonical_bytes(self.body())
        good = set()
        for signature in self.signatures:
            root = roots.get(signature["key_id"])
            if root is None:
                continue  # a root this check does not count (an old one, or another device's)
            if not signature_holds(signature, data, root):
                raise PufError(f"{where}: the signature of root {signature['key_id']} does not match the list "
                               "(altered after signing)")
            good.add(signature["key_id"])
        return good

    def require_signed(self, roots: dict, threshold: int, whose: str, where: str) -> None:
        good = self.signed_by(roots, where)
        if len(good) < threshold:
            raise PufError(f"{where} is signed by {len(good)} of {whose} root keys, {threshold} needed: a root list "
                           "must be signed offline by enough root keys before a device trusts it")

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires

    def describe(self) -> str:
        return (f"root list version {self.version}, expires {self.expires:%Y-%m-%d %H:%M} UTC, {self.threshold} of "
                f"{len(self.roots)} roots, signing keys {', '.join(sorted(self.keys))}")


def accept(offered: RootList, held: RootList | None, device_roots: dict, device_threshold: int,
           where: str) -> RootList:
    """The list a device holds after seeing `offered`: `held` when it is the same list; else
    `offered` when it is newer and signed by k of the held list's roots (`device_threshold` of
    the device's own roots when it holds none: a first list's own threshold is the attacker's
    to choose) and by k of its own. PufError for an older list, another list under the same
    version, an expired one, or one signed by too few roots."""
    if held is not None and offered.version < held.version:
        raise PufError(f"{where} has version {offered.version}, older than version {held.version} this device "
                       "holds: an old list could trust a signing key since dropped (a leaked one)")
    if held is not None and offered.version == held.version:
        if canonical_bytes(offered.body()) != canonical_bytes(held.body()):
            raise PufError(f"{where} has version {offered.version}, as the list this device holds, but other "
                           "contents: a changed list needs a new version")
        return held
    if offered.expired():
        raise PufError(f"{where} expired on {offered.expires:%Y-%m-%d %H:%M} UTC: ask the factory for a bundle "
                       "with a current root list")
    if held is None:
        offered.require_signed(device_roots, max(device_threshold, offered.threshold), "this device's", where)
    else:
        offered.require_signed(held.roots, held.threshold, f"the {len(held.roots)} current", where)
    offered.require_signed(offered.roots, offered.threshold, "its own", where)
    return offered


@dataclass(frozen=True)
class Trust:
    """The keys a bundle's signature is checked against, and the root list that named them
    (None: a folder of trusted keys, no root)."""

    keys: dict
    root_list: RootList | None


def root_keys(folder: Path) -> dict:
    """Root key id -> public key, for the ``*.pub`` files in FOLDER/root ({}: no root)."""
    return {key_id(raw_public_bytes(key)): key
            for key in map(load_public_key, sorted((Path(folder) / ROOT_KEYS).glob("*.pub")))}


def device_threshold(folder: Path, roots: dict) -> int:
    """How many of the device's root keys must sign the first root list it accepts: the number
    given at provisioning (`puf device trust --root KEY --threshold K`), else all of them, so
    that one leaked root key cannot hand a new device a list of its own."""
    path = Path(folder) / ROOT_KEYS / ROOT_THRESHOLD
    if not path.is_file():
        return len(roots)
    text = read_at_most(path, 16, "root threshold").decode("ascii", "replace").strip()
    if not text.isdigit() or not 1 <= int(text) <= len(roots):
        raise PufError(f"{path} must hold a whole number from 1 to {len(roots)} (the device's root keys), "
                       f"got {text!r}")
    return int(text)


def set_device_threshold(folder: Path, threshold: int) -> None:
    """Record how many of the device's root keys must sign its first root list."""
    roots = root_keys(folder)
    if not 1 <= threshold <= len(roots):
        raise PufError(f"--threshold must be from 1 to {len(roots)}: the root keys this device trusts")
    write_atomic(Path(folder) / ROOT_KEYS / ROOT_THRESHOLD, f"{threshold}\n")


def bundle_trust(bundle: Path, folder: Path | None, held: Path | None) -> Trust:
    """The keys that may have signed the bundle in the folder `bundle`, for a device that trusts
    the keys folder `folder` (None: the default) and holds the root list at `held` (None or no
    file: none yet). With root keys in the folder, the newest list (`accept`) names them, beside
    any ``*.pub`` keys of the folder itself; without, the folder's keys alone, as before."""
    folder = Path(folder) if folder is not None else default_trusted_keys_dir()
    roots = root_keys(folder)
    if not roots:
        return Trust(load_trusted_keys(folder), None)
    current = RootList.read(held) if held is not None and Path(held).is_file() else None
    if current is not None:  # the device's own copy: as trusted as its keys folder, still checked whole
        current.require_signed(current.roots, current.threshold, "its own", str(held))
    carried = Path(bundle) / ROOT_LIST
    if carried.is_file():
        current = accept(RootList.read(carried), current, roots, device_threshold(folder, roots),
                         f"the bundle's {ROOT_LIST}")
    if current is None:
        raise NoTrustedKeys(f"this device trusts root keys ({folder / ROOT_KEYS}) but holds no root list, and the "
                            f"bundle {bundle} carries none ({ROOT_LIST}): install a bundle signed with a root list")
    if current.expired():
        raise PufError(f"the root list this device holds expired on {current.expires:%Y-%m-%d %H:%M} UTC: install "
                       "a bundle that carries a current one")
    keys = dict(current.keys)
    if any(folder.glob("*.pub")):  # keys trusted by hand stay trusted, whatever the list says
        keys.update(load_trusted_keys(folder))
    return Trust(keys, current)
