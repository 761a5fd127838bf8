"""Write a new version of a bundle: never half-written, never touching the old one's files.

    with BundleUpdate(bundle) as update:                   # a path, or the bundle opened (edge_app.bundle.open_bundle)
        index_path = update.path_for("shards/p03.faiss")   # a fresh file in the new version
        index_build.write_index(index, index_path)
        update.manifest.shards = ...                        # edge_app.bundle_format.Manifest
        update.commit(private_key)                          # checksums, signature, rename

The new version is built in a temporary sibling folder holding hard links to the old
version's files (instant, no copies), so only the files that change are written. A file
that changes is unlinked first and written anew, so the old version's inode, which the
link shares, is never modified. `commit` hashes the new and changed files, raises the
bundle's sequence by one and stamps its creation time (`edge_app.bundle_format.Release`: what
lets a device refuse an older bundle), signs the manifest and makes the folder the bundle's
current version (`edge_app.folder_swap.swap_version`: readers see the old version or the new
one whole), the way `puf export` writes a bundle.
A version is signed only over a manifest that was itself signed by the same key or a
trusted one, or that this account exported (`trainer.keys.check_before_signing`), with a
sequence at most one above the highest the key has signed (`trainer.keys.sign_release`), and a folder holding files its
manifest does not list is refused: replacing it would delete them (a private key kept
beside the model).

One writer at a time: `bundle_lock` holds `.BUNDLE.lock`, a file beside the bundle folder
(inside it, the folder's listed-files check would refuse it, and a new version would
replace it), for a whole read-modify-write such as an enrollment; a second writer stops
with a message naming the first one's pid instead of building on a version about to be
replaced and losing the first one's labels. Writers lock and write at the bundle's resolved
path (`edge_app.folder_swap.home_of`): written through a symlink, the bundle is still the one
bundle it links to, with its one lock, not a second bundle the link becomes.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.bundle import Check, OpenedBundle, check_models, open_bundle
from edge_app.bundle_format import MANIFEST, FileEntry, Manifest, utc_text
from edge_app.errors import PufError
from edge_app.folder_lock import exclusive
from edge_app.folder_swap import BRIEF_HOLD_SECONDS, aside_of, home_of, repair, swap_version
from edge_app.folder_swap import lock_of as lock_path  # the lock file of a bundle: a hidden sibling
from edge_app.revocations import Revoked
from edge_app.trust_root import ROOT_LIST
from trainer.keys import check_attachable, check_before_signing, check_valid_days, root_list_beside, sign_release

if TYPE_CHECKING:
    from trainer.keys import SigningKey

log = logging.getLogger(__name__)

def replaced_sequence(out: Path) -> int:
    """The sequence of the bundle at `out` that a new export replaces (0: none, or none
    readable), so that the new model's first signing still counts up from what devices hold."""
    try:
        return Manifest.read(out).release.sequence if (Path(out) / MANIFEST).is_file() else 0
    except PufError:
        return 0


def signed_sequence(bundle: Path, private_key: SigningKey, trusted_keys: Path | None) -> int:
    """The sequence of the bundle at `bundle` when this key or a trusted one signed it; 0 when
    there is none, or it is unsigned, edited or signed by another key: a number no one we
    trust signed never lets a key count up from it."""
    try:
        manifest = Manifest.read(bundle)
        if manifest.signature is not None and check_before_signing(manifest, private_key, trusted_keys):
            return manifest.release.sequence
    except PufError:
        pass
    return 0


def new_version_dir(out: Path) -> Path:
    """An empty temporary folder beside `out` to build its new version in (`.OUT.new-RANDOM`)."""
    out = home_of(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    tmp.chmod(0o755)
    return tmp


def remove_unfinished(out: Path) -> None:
    """Remove the unfinished versions of `out` that killed writers left beside it (call it only
    holding `bundle_lock`: no writer of `out` is running)."""
    out = home_of(out)
    unfinished = re.compile(rf"\.{re.escape(out.name)}\.new-[^.]+")  # never another bundle's: its name differs
    for path in out.parent.iterdir():
        if unfinished.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            log.warning("removing %s, an unfinished version of %s left by a writer that was stopped", path, out)
            shutil.rmtree(path, ignore_errors=True)


def replace_dir(tmp: Path, out: Path) -> None:
    """Make the finished folder `tmp` the current version of `out` (`edge_app.folder_swap.swap_version`,
    which `bundle_lock` repairs when a crash cut it in half)."""
    swap_version(tmp, home_of(out))


@contextmanager
def bundle_lock(bundle: Path) -> Iterator[None]:
    """Hold `bundle` for one writer from reading it to the last record of what was written
    (`edge_app.folder_lock.exclusive`: a PufError when another process holds it), with the
    old version put back first if a crash cut a swap in half (`edge_app.folder_swap.repair`) and
    the unfinished versions of killed writers removed (`remove_unfinished`)."""
    named, bundle = Path(bundle), home_of(bundle)
    if not bundle.parent.is_dir():
        raise PufError(f"no bundle at {named}: the folder {bundle.parent} does not exist")
    with exclusive(lock_path(bundle), f"the bundle {bundle}", wait=BRIEF_HOLD_SECONDS):
        repair(bundle, aside_of(bundle))
        remove_unfinished(bundle)
        yield


def check_update(bundle: Path, manifest: Manifest, private_key: SigningKey | None = None,
                 trusted_keys: Path | None = None) -> None:
    """Refuse, before any work, a new version of `bundle` (read as `manifest`) that would
    delete files it did not write, or sign over a manifest no trusted key signed."""
    bundle = Path(bundle)
    listed = {*manifest.file_entries, MANIFEST, ROOT_LIST}
    foreign = sorted(name for name in (p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
                                       if p.is_symlink() or not p.is_dir()) if name not in listed)
    if foreign:
        raise PufError(f"{bundle} holds {len(foreign)} file(s) its {MANIFEST} does not list, e.g. {foreign[0]}: "
                       "a new version replaces the whole folder and would delete them; move them out first")
    if private_key is not None:
        check_before_signing(manifest, private_key, trusted_keys, f"{bundle / MANIFEST}")


def read_for_update(bundle: Path, private_key: SigningKey | None = None,
                    trusted_keys: Path | None = None) -> OpenedBundle:
    """A bundle about to get a new version (call it under `bundle_lock`, and give what it
    returns to `BundleUpdate`): every file checked against its manifest, and refused by
    `check_update` before any work."""
    opened = open_bundle(bundle, Check.FORMAT)
    check_update(bundle, opened.manifest, private_key, trusted_keys)
    return opened.checked_files()


class BundleUpdate:
    def __init__(self, bundle: Path | OpenedBundle, out: Path | None = None) -> None:
        """The new version of `bundle`: a path, or the bundle as the caller opened it under
        `bundle_lock` (`read_for_update`), whose manifest is then not read again."""
        opened = bundle if isinstance(bundle, OpenedBundle) else open_bundle(bundle, Check.FORMAT)
        self.source = home_of(opened.named)
        self.out = home_of(out) if out is not None else self.source
        self.original = opened.manifest
        self.manifest = copy.deepcopy(self.original)
        if self.out.exists():
            check_update(self.out, self.original if self.out == self.source else Manifest.read(self.out))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.dir = new_version_dir(self.out)
        self._written: set[str] = set()
        try:
            carried = [ROOT_LIST] if (self.source / ROOT_LIST).is_file() else []  # until a key attaches its own
            for name in [*self.manifest.file_entries, *carried]:
                target = self.dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.source / name, target)
                except OSError:
                    shutil.copy2(self.source / name, target)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> BundleUpdate:
        return self

    def __exit__(self, kind, error, *rest: object) -> None:
        """Remove the unfinished version; a write that failed (a full disk) is a PufError."""
        if kind is not None:
            self.abort()
            if issubclass(kind, OSError):
                raise self._write_failed(error) from None

    def path_for(self, name: str) -> Path:
        """Where to write bundle file `name` of the new version (a fresh inode)."""
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._written.add(name)
        return path

    def remove(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)
        self.manifest.file_entries.pop(name, None)
        self._written.discard(name)

    def commit(self, private_key: SigningKey | None = None, valid_days: float | None = None,
               trusted_keys: Path | None = None) -> Manifest:
        """Hash what was written, raise the sequence, sign (when a key is given, and the old
        version's signature holds against it or `trusted_keys`), write the manifest and
        rename the new version into place; returns the manifest. `valid_days` sets the
        expiry that many days from now; without it the old expiry, if any, stays."""
        proven = 0  # the sequence of what this is built on or replaces, when this key or a trusted one signed it
        if private_key is not None:  # again: the manifest this version was built on
            if check_before_signing(self.original, private_key, trusted_keys, f"{self.source / MANIFEST}"):
                proven = self.original.release.sequence
            if self.out != self.source:
                proven = max(proven, signed_sequence(self.out, private_key, trusted_keys))
        now = datetime.now(UTC)
        self.manifest.sequence = self.manifest.release.sequence + 1
        self.manifest.created = utc_text(now)
        if valid_days is not None:
            check_valid_days(valid_days)
            self.manifest.expires = utc_text(now + timedelta(days=valid_days))

        files = self.manifest.file_entries
        for name in sorted(self._written):
            path = self.dir / name
            if not path.exists():
                raise PufError(f"bundle file {name} was never written")
            files[name] = FileEntry.of(path)
        self.manifest.files = dict(sorted(files.items()))
        self.manifest.signature = None
        self.manifest.extra["signature"] = None  # written as null until signed
        if private_key is not None:  # every value range-checked, and the sizes the model's, before signing
            unsigned = Manifest.from_dict(self.manifest.to_dict(), f"the new version's {MANIFEST}")
            check_models(self.dir, unsigned)
            self._attach_root_list(private_key)
            Revoked.load(self.dir, unsigned)  # a revocation list well formed, its fingerprints the model's size
            self.manifest = Manifest.from_dict(sign_release(unsigned.to_dict(), private_key, proven, self.out))
        try:
            self.manifest.write(self.dir)
            replace_dir(self.dir, self.out)
        except OSError as error:
            self.abort()
            raise self._write_failed(error) from None
        return self.manifest

    def _attach_root_list(self, private_key: SigningKey) -> None:
        """The root list kept beside the key (`trainer.keys.root_list_beside`), checked, in the new
        version as ROOT_LIST (unlisted: devices check it on its own root signatures); without
        one, the old version's list stays."""
        beside = root_list_beside(private_key)
        if beside.exists():
            listed = check_attachable(beside, private_key)  # written as checked, not read again
            self.path_for(ROOT_LIST).write_text(json.dumps(listed.document, indent=1) + "\n")
            self._written.discard(ROOT_LIST)  # not a manifest entry

    def _write_failed(self, error: OSError) -> PufError:
        return PufError(f"cannot write the bundle {self.out} ({error.strerror or error}); the old version is "
                        "unchanged")

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
