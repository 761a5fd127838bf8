"""A device's own Ed25519 key: it signs the journal sync files the device sends home, so
the central registry can refuse a file the device did not write (`edge_app.journal_sync`).

The pair lives beside the journal (``journal.sqlite`` -> ``journal.key``, mode 600, and
``journal.pub``), and is made on first use: the first export or `puf journal identity`.
Two processes making it at once cannot end with two keys: the private key is linked into
place only if none is there yet, and the loser loads the winner's. The public key is always
written again from the private one, so it cannot drift. The public key is registered once
with the central registry (`puf registry add-device DEVICE_ID journal.pub`).
"""

from __future__ import annotations

from pathlib import Path

from edge_app.atomic_write import replacing
from edge_app.errors import PufError, require_module
from edge_app.signing import key_id, public_pem, raw_public_bytes, read_private_key


def key_paths(journal_path: Path) -> tuple[Path, Path]:
    """The device's private and public key files for the journal at `journal_path`."""
    journal_path = Path(journal_path)
    return journal_path.with_suffix(".key"), journal_path.with_suffix(".pub")


def device_key(journal_path: Path):
    """The device's private key (made now if it has none); PufError when the key file is
    readable by others (as ssh refuses it: whoever reads it can sign as this device)."""
    require_module("cryptography", "device")
    private_path, public_path = key_paths(journal_path)
    if not private_path.exists():
        _make(private_path)
    key = read_private_key(private_path, "the device key")  # others could sign journals as this device
    public = public_pem(key.public_key())
    try:
        if not public_path.is_file() or public_path.read_bytes() != public:
            with replacing(public_path, mode=0o644) as tmp:
                tmp.write_bytes(public)
    except OSError as error:
        raise PufError(f"cannot write the device's public key {public_path}: {error.strerror or error}") from None
    return key


def device_key_id(private_key) -> str:
    return key_id(raw_public_bytes(private_key.public_key()))


def _make(private_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(private_path, mode=0o600, exclusive=True) as tmp:
            tmp.write_bytes(pem)
    except FileExistsError:
        pass  # another process made it first: that key is the device's
    except OSError as error:
        raise PufError(f"cannot make the device key {private_path}: {error.strerror or error}") from None

