"""Where the device keeps its things, and how a new bundle replaces the old one.

    HOME/                    $PUF_HOME, else $XDG_DATA_HOME/puf (~/.local/share/puf)
        bundle/              the bundle labels are verified with (installed from a USB stick)
        bundle.previous/     the one it replaced, kept until the next update
        bundle.incoming/     an update being copied and checked (gone when it is done)
        journal.sqlite       every verification (`edge_app.journal`)
        settings.json        camera, exposure and label size chosen in the app; "label_px" is the
                             label side verify expects in a still, px, or null: found in each photo
        trusted_keys/        public keys of the factories whose bundles this device accepts
                             (optional; else `edge_app.signing.default_trusted_keys_dir`), and
                             in trusted_keys/root/ the root keys, when it trusts a root
        root.json            the newest root list the device accepted (`edge_app.trust_root`):
                             an older one, carried by a replayed bundle, is refused
        revoked_seen.json    the highest revocation list version and every label id this device
                             has seen revoked (`edge_app.revocations`)

An update is copied whole to ``bundle.incoming``, flushed to the storage, checked there
(checksums and Ed25519 signature, `edge_app.bundle.load_bundle`; a sequence above the
installed bundle's and no expiry passed, `edge_app.bundle_format.Release`, so an old bundle cannot be
replayed over a newer one unless the caller says so; and opened whole: the model run and
the shards searched once, `open_verifier`) and only then swapped in by two renames:
``bundle`` -> ``bundle.previous``, ``bundle.incoming`` -> ``bundle``. A crash or power
cut between the two leaves no ``bundle`` but a whole ``bundle.previous``,
which opening the store puts back (`edge_app.folder_swap`, shared with the factory's bundle
writers); at every moment a checked bundle is there to load.

Revocations only grow on a device: a bundle whose revocation list is of a lower version than
one the device has seen, or leaves out a label it has seen revoked, is refused, also when an
older bundle is installed on purpose (`allow_older`), so that no update, however new its
sequence (a fresh export enrolled without the list), makes a stolen label genuine again.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_app.atomic_write import sync_dir, write_atomic
from edge_app.bundle import load_bundle
from edge_app.bundle_format import MANIFEST, Manifest
from edge_app.errors import BundleRefused, PufError
from edge_app.folder_swap import repair, swap_in
from edge_app.json_files import read_json
from edge_app.label_crop import CROP_SIZE
from edge_app.revocations import Revoked
from edge_app.signing import canonical_bytes, default_trusted_keys_dir
from edge_app.trust_root import ROOT_LIST
from edge_app.verify import CaptureLimits, Verifier

log = logging.getLogger(__name__)

BUNDLE, PREVIOUS, INCOMING = "bundle", "bundle.previous", "bundle.incoming"
JOURNAL, SETTINGS, TRUSTED_KEYS = "journal.sqlite", "settings.json", "trusted_keys"
REVOKED_SEEN = "revoked_seen.json"


def device_home() -> Path:
    """$PUF_HOME, else $XDG_DATA_HOME/puf, else ~/.local/share/puf."""
    if os.environ.get("PUF_HOME"):
        return Path(os.environ["PUF_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "puf"


def trusted_keys_dir(home: Path) -> Path:
    """The keys the device in `home` trusts: HOME/trusted_keys when it has that folder, else
    the user's (`edge_app.signing.default_trusted_keys_dir`)."""
    own = Path(home) / TRUSTED_KEYS
    return own if own.is_dir() else default_trusted_keys_dir()


def on_raspberry_pi() -> bool:
    try:
        return "raspberry pi" in Path("/proc/device-tree/model").read_text(errors="replace").lower()
    except OSError:
        return False


def default_settings() -> dict:
    return {"camera": "picamera2" if on_raspberry_pi() else "opencv:0", "exposure_us": None, "gain": None,
            "label_px": None}


def bundle_version(bundle) -> str:
    """A short id of an `edge_app.bundle.Bundle` for people and the journal: the model's
    version and the first 8 hex digits of the sha256 of its manifest's signed contents
    (so every enrollment, which changes the manifest, is a new version), e.g.
    ``sim-20261125-3fa9c2d1``."""
    manifest = bundle.manifest
    digest = hashlib.sha256(canonical_bytes(manifest.to_dict())).hexdigest()[:8]
    model = manifest.model
    version = (model.version or model.name if model else None) or "bundle"
    return f"{version}-{digest}"


def open_verifier(bundle, label_px: float | None = None):
    """The bundle's `edge_app.verify.Verifier`, run once on a blank photo and a blank crop:
    every part a verdict needs (threshold, model, segmentation with the glyph templates, the
    shard search) is opened and used, so a signed bundle that cannot verify is found before
    it is installed, and the first real capture pays no first-call set-up."""
    verifier = Verifier(bundle, limits=CaptureLimits(label_px=label_px))
    verifier.verify_image(np.full((600, 800, 3), 40, np.uint8))
    verifier.lookup([np.full((CROP_SIZE, CROP_SIZE, 3), 40, np.uint8)])
    return verifier


class DeviceStore:
    """The device's folder (see the module's docstring)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home) if home is not None else device_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PufError(f"cannot make the device's folder {self.home}: {error.strerror or error}") from None
        self.journal_path = self.home / JOURNAL
        self._repair()

    def _repair(self) -> None:
        """Finish what a crash during an update left: the previous bundle back if the new one
        was not yet in place, and no half-copied update."""
        incoming = self.home / INCOMING
        repair(self.home / BUNDLE, self.home / PREVIOUS)
        if incoming.exists():
            shutil.rmtree(incoming, ignore_errors=True)

    # ---- bundle --------------------------------------------------------------------------
    def bundle_path(self) -> Path | None:
        """HOME/bundle when one is installed, else None."""
        path = self.home / BUNDLE
        return path if path.is_dir() else None

    def trusted_keys_dir(self) -> Path:
        return trusted_keys_dir(self.home)

    def installed_sequence(self) -> int:
        """The sequence of the installed bundle (0: none, or one too damaged to read, which any
        signed bundle may replace)."""
        path = self.bundle_path()
        if path is None:
            return 0
        try:
            return Manifest.read(path).release.sequence
        except PufError as error:
            log.warning("the installed bundle's sequence cannot be read (%s): counting it as 0", error)
            return 0

    def install_bundle(self, source: Path, trusted_keys: dict | Path | None,
                       progress: Callable[[int, int], None] | None = None, *, allow_older: bool = False):
        """Copy the bundle in `source` (a USB stick) in, check it, and make it the device's
        bundle; returns it loaded (`edge_app.bundle.Bundle`). Any failure is a PufError naming
        the failing file, and the current bundle is left as it was. A bundle whose sequence is
        not above the installed one's is refused unless `allow_older` (going back on purpose);
        an expired one always is. `progress(done, total)`, in bytes, is called as the copy goes
        on (from the calling thread)."""
        source = Path(source)
        if not source.is_dir():
            raise BundleRefused(f"no bundle at {source}: not a folder")
        if not (source / MANIFEST).is_file():
            raise BundleRefused(f"{source} is not a bundle: it has no {MANIFEST}")
        incoming, bundle, previous = self.home / INCOMING, self.home / BUNDLE, self.home / PREVIOUS
        if incoming.resolve() in (source.resolve(), *source.resolve().parents):
            raise BundleRefused(f"{source} is the device's own update folder: install from the bundle's own folder")
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            _copy_tree(source, incoming, progress)
            try:
                loaded = load_bundle(incoming, trusted_keys, root_list=self.root_list_path())
            except PufError as error:
                said = str(error).replace(str(incoming), str(source)).replace(f"{INCOMING}/", "")
                raise BundleRefused(said) from None
            self._check_release(loaded.release, source, allow_older)
            seen = self.check_revocations(loaded.revoked.listing, source)
            try:
                open_verifier(loaded)
            except Exception as error:  # whatever stops it verifying (a threshold "abc", a model the runtime rejects)
                log.warning("the bundle from %s cannot be opened", source, exc_info=True)
                detail = str(error) if isinstance(error, PufError) else f"{type(error).__name__}: {error}"
                raise BundleRefused(f"the bundle in {source} is signed but cannot be opened ({detail}); the current "
                                    "bundle is unchanged") from None
            # what it revokes is recorded before it is in place: a kill between the two leaves the old
            # bundle with a record that only refuses more; the root list after (the bundle carries it)
            listing = loaded.revoked.listing
            write_atomic(self.home / REVOKED_SEEN, json.dumps(
                {"version": max(seen[0], listing.version), "label_ids": sorted(seen[1] | listing.label_ids)}))
            swap_in(incoming, bundle, previous)
            self._keep_root_list(loaded.root_list)
        except OSError as error:
            raise PufError(f"cannot install the bundle from {source}: {error.strerror or error}; the current "
                           "bundle is unchanged") from None
        finally:
            if incoming.exists():
                shutil.rmtree(incoming, ignore_errors=True)
        log.info("installed the bundle from %s", source)
        return dataclasses.replace(loaded, path=bundle)  # its shards stay mapped through the rename

    def root_list_path(self) -> Path:
        """HOME/root.json: the newest root list this device accepted (there when it trusts a root)."""
        return self.home / ROOT_LIST

    def _keep_root_list(self, root_list) -> None:
        """Keep `root_list` (accepted with the bundle just installed, so not older) as the one the
        device holds, written atomically; a crash before leaves it in the installed bundle, and
        the next load accepts it from there."""
        if root_list is not None:
            write_atomic(self.root_list_path(), json.dumps(root_list.document, indent=1) + "\n")

    def _check_release(self, release, source: Path, allow_older: bool) -> None:
        try:
            release.refuse_expired(f"the bundle in {source}", "; the current bundle is unchanged")
        except PufError as error:
            raise BundleRefused(str(error)) from None
        current = self.installed_sequence()
        if release.sequence <= current and self.bundle_path() is not None and not allow_older:
            same = "the same as" if release.sequence == current else "older than"
            raise BundleRefused(f"the bundle in {source} has sequence {release.sequence}, {same} the installed "
                                f"bundle's {current}: an older bundle is refused so that it cannot undo a newer "
                                "one (install it only on purpose, allowing an older bundle); the current bundle is "
                                "unchanged")

    def revocations_seen(self) -> tuple[int, set[str]]:
        """The highest revocation list version and the label ids this device has seen revoked:
        its record, and the installed bundle's list; a PufError when the record is unreadable."""
        version, ids = 0, set()
        path = self.home / REVOKED_SEEN
        if path.exists():
            data = read_json(path, "record of revoked labels")
            held = data.get("version") if isinstance(data, dict) else None
            listed = data.get("label_ids") if isinstance(data, dict) else None
            if isinstance(held, bool) or not isinstance(held, int) or not isinstance(listed, list) \
                    or not all(isinstance(i, str) for i in listed):
                raise PufError(f"the record of revoked labels {path} is damaged: restore it from a backup (it keeps "
                               "revoked labels revoked); no bundle was installed")
            version, ids = held, set(listed)
        installed = self.bundle_path()
        if installed is not None:
            try:
                listing = Revoked.load(installed, Manifest.read(installed)).listing
                version, ids = max(version, listing.version), ids | listing.label_ids
            except PufError as error:
                log.warning("the installed bundle's revocation list cannot be read (%s)", error)
        return version, ids

    def check_revocations(self, listing, source: Path) -> tuple[int, set[str]]:
        """Refuse a bundle whose revocation list (`edge_app.revocations.RevocationList`) is older
        than one this device has seen, or leaves out a label it has seen revoked; returns what
        it has seen."""
        version, ids = self.revocations_seen()
        if listing.version < version:
            raise BundleRefused(f"the bundle in {source} has revocation list version {listing.version}, older than the "
                                f"version {version} this device has seen: it could make revoked labels genuine again; "
                                "the current bundle is unchanged")
        missing = sorted(ids - listing.label_ids)
        if missing:
            raise BundleRefused(f"the bundle in {source} leaves out label {missing[0]}, which this device has seen "
                                "revoked" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                                + ": a revocation is never undone by an update; the current bundle is unchanged")
        return version, ids

    # ---- settings ------------------------------------------------------------------------
    def load_settings(self) -> dict:
        """HOME/settings.json over the defaults; an unreadable file counts as none (it is
        logged, and replaced by the next save)."""
        settings = default_settings()
        path = self.home / SETTINGS
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return settings
        except (OSError, ValueError) as error:
            log.warning("ignoring the unreadable settings file %s: %s", path, error)
            return settings
        if not isinstance(saved, dict):
            log.warning("ignoring the settings file %s: not a JSON object", path)
            return settings
        settings.update(saved)
        return settings

    def save_settings(self, settings: dict) -> None:
        """Write HOME/settings.json atomically (a temporary file renamed over it)."""
        try:
            text = json.dumps(copy.deepcopy(settings), indent=1, sort_keys=True)
        except (TypeError, ValueError) as error:
            raise PufError(f"the settings cannot be saved: {error}") from None
        write_atomic(self.home / SETTINGS, text)


def _copy_tree(source: Path, target: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Copy every file of `source` to `target`, flushed to the storage; a PufError naming
    the file that could not be read or written."""
    target.mkdir(parents=True)
    paths = sorted(source.rglob("*"))
    total = sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())
    done = 0
    for path in paths:
        name = path.relative_to(source).as_posix()
        if path.is_symlink():
            raise PufError(f"bundle file {name} is a symbolic link: copy the bundle itself, not links to it")
        if path.is_dir():
            (target / name).mkdir(exist_ok=True)
            continue
        try:
            with path.open("rb") as src, (target / name).open("wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise PufError(f"the device's storage is full: bundle file {name} could not be copied; the current "
                               "bundle is unchanged") from None
            raise PufError(f"bundle file {name} could not be copied: {error.strerror or error}; the current "
                           "bundle is unchanged") from None
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        sync_dir(folder)


