"""Open a bundle, refusing one that is not exactly what was signed: the bundle's one reader.

`open_bundle(path, check=...)` reads and parses the manifest once and checks as much as the
caller needs (`Check`: the device's whole check, the factory's checksums of its own bundle,
or the format only); it returns an `OpenedBundle` (the typed manifest, the version folder it
came from, who signed it), which the factory's writers take (`trainer.bundle_write`).
`load_bundle` is the device's: an opened bundle with its shards, templates and revocations.

The bundle's files and manifest are `edge_app.bundle_format`'s (its docstring lists them).
The whole check (`Check.SIGNATURE`) is, in order: the manifest's format (`edge_app.bundle_format.Manifest`); its
signature against the trusted keys, or the signing keys of the newest root list
(`edge_app.trust_root`), so its list of checksums can be believed; that every listed file is
there with its sha256; and that no file is there that the manifest does not list (but the
root list, checked on its own root signatures). An unlisted file could not change a verdict
(nothing unlisted is ever read), but it means the folder is not the bundle that was signed,
a mix of two versions or a planted file, and a refusal that names it is cheaper to act on
than a device that quietly ignores it. Every refusal is a PufError naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge_app.bundle_format import (
    FORMAT_FILES,
    MANIFEST,
    TEMPLATES,
    Decision,
    Manifest,
    Release,
    outside,
    read_written,
    verify_files,
)
from edge_app.errors import PufError
from edge_app.folder_swap import current_version, repair_locked
from edge_app.orientation import PatternTemplates
from edge_app.preprocess import Preprocess
from edge_app.revocations import Revoked
from edge_app.runtime import ModelRunner
from edge_app.shards import ShardSet
from edge_app.signing import verify_manifest
from edge_app.trust_root import ROOT_LIST, RootList, Trust, bundle_trust

if TYPE_CHECKING:
    from edge_app.orientation import PatternTemplates
    from edge_app.shards import ShardSet


def unlisted_files(bundle: Path, manifest: Manifest) -> list[str]:
    """Files in the bundle folder that the manifest does not list (bundle-relative)."""
    listed = set(manifest.file_entries) | {MANIFEST, ROOT_LIST}  # the root list is checked on its own
    found = sorted(p.relative_to(bundle).as_posix() for p in Path(bundle).rglob("*")
                   if p.is_file() or p.is_symlink())
    return [name for name in found if name not in listed]


def check_bundle_files(bundle: Path, manifest: Manifest) -> None:
    """Every listed file present and matching its sha256, and nothing else; PufError naming
    the first file that fails."""
    if not manifest.file_entries:
        raise PufError(f"{MANIFEST} lists no files")
    for name in manifest.file_entries:
        if outside(name):
            raise PufError(f"{MANIFEST} lists {name!r}, which is outside the bundle")
    verify_files(bundle, manifest)
    extra = unlisted_files(bundle, manifest)
    if extra:
        raise PufError(f"bundle file {extra[0]} is not listed in the signed manifest"
                       + (f" (nor are {len(extra) - 1} more)" if len(extra) > 1 else "")
                       + ": the folder is not the bundle that was signed")


def check_models(folder: Path, manifest: Manifest) -> None:
    """Every model file the manifest lists opens with the manifest's input size, embedding size
    and pattern classes (`ModelRunner` checks them against the model's own): what a signer
    checks before vouching for them; PufError naming the file otherwise."""
    params = Preprocess.from_dict(manifest.preprocessing or {})
    for name in FORMAT_FILES.values():
        if name in manifest.file_entries:
            ModelRunner(Path(folder) / name, 1, manifest.embedding_dim, len(manifest.pattern_classes or []), params)


@dataclass
class Bundle:
    """An opened bundle. `load_bundle` has checked that the threshold, pattern classes,
    embedding size, preprocessing and shards are there."""

    path: Path
    manifest: Manifest
    signer: str | None  # the trusted key that signed it (None: opened without checking)
    shards: ShardSet
    templates: PatternTemplates | None
    root_list: RootList | None = None  # the root list that named its signer (None: a folder of trusted keys)
    revoked: Revoked = field(default_factory=Revoked)  # the signed revocation list (`edge_app.revocations`)

    @property
    def release(self) -> Release:
        return self.manifest.release

    @property
    def decision(self) -> Decision:
        return self.manifest.decision or Decision()

    @property
    def threshold(self) -> float:
        threshold = self.decision.threshold
        if threshold is None:  # load_bundle refuses such a bundle; one made otherwise may lack it
            raise PufError(f"{MANIFEST} has no decision threshold")
        return float(threshold)

    @property
    def far(self) -> float | None:
        return self.decision.far

    @property
    def uncalibrated_warning(self) -> str | None:
        """Why the threshold cannot be trusted yet, when export marked it not calibrated
        (`puf evaluate` on re-captures calibrates it); None otherwise."""
        if self.decision.is_calibrated:
            return None
        return (f"the bundle's threshold {self.threshold:g} is not calibrated "
                f"({self.decision.why_not_calibrated}): verdicts may accept counterfeits")

    @property
    def pattern_classes(self) -> list[str]:
        return list(self.manifest.pattern_classes or [])

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest.embedding_dim or 0)

    def runner(self, fmt: str | None = None, num_threads: int = 2) -> ModelRunner:
        """The bundle's model (its default format unless `fmt`), checked when the bundle was."""
        return ModelRunner.of_manifest(self.path, self.manifest, fmt, num_threads)

    @classmethod
    def of(cls, opened: OpenedBundle, mmap: bool = True) -> Bundle:
        """The opened bundle with what a verification needs loaded (shards, templates,
        revocations), without reading its manifest again; a PufError when something a device
        needs is absent."""
        manifest, path = opened.manifest, opened.path
        if manifest.shards is None:
            raise PufError(f"the bundle {opened.named} has no enrolled labels (no shards): run puf enroll")
        manifest.check_named_files()
        if manifest.threshold is None:
            raise PufError(f"{MANIFEST} has no decision threshold")
        for needed in ("pattern_classes", "embedding_dim", "preprocessing"):
            if getattr(manifest, needed) is None:
                raise PufError(f"{MANIFEST} has no {needed!r}")
        templates = PatternTemplates.load(path / TEMPLATES) if TEMPLATES in manifest.file_entries else None
        return cls(path, manifest, opened.signer, ShardSet.load(path, manifest.shards, mmap), templates,
                   opened.root_list, Revoked.load(path, manifest))


class Check(StrEnum):
    """How much `open_bundle` checks before it returns."""

    SIGNATURE = "signature"  # the device's: signed by a trusted key, every file as signed, nothing unlisted
    FILES = "files"  # the factory's own bundle: every listed file matches its checksum
    FORMAT = "format"  # the manifest's format only (a factory tool reading its own fresh bundle)


@dataclass(frozen=True, kw_only=True)
class OpenedBundle:
    """A bundle as `open_bundle` read it: its manifest parsed once, and how far it was checked."""

    named: Path  # the path asked for
    path: Path  # the version folder everything was read from (`edge_app.folder_swap.current_version`)
    manifest: Manifest
    check: Check
    signer: str | None = None  # the trusted key that signed it (Check.SIGNATURE only)
    root_list: RootList | None = None  # the root list that named the signer (None: a folder of trusted keys)

    def checked_files(self) -> OpenedBundle:
        """This bundle with every listed file checked against its checksum (`Check.FILES`), for
        a caller that first refuses it on its manifest alone: hashing the files is work."""
        if self.check != Check.FORMAT:
            return self
        verify_files(self.path, self.manifest)
        return replace(self, check=Check.FILES)


SWAP_RETRIES = 3  # a read that fails while the bundle moved on to a newer version is tried again
_T = TypeVar("_T")


def open_bundle(path: Path, check: Check = Check.SIGNATURE, *, trusted_keys: dict | Path | None = None,
                root_list: Path | None = None) -> OpenedBundle:
    """Read the bundle's manifest once and check the bundle as far as `check` asks. For
    `Check.SIGNATURE`, `trusted_keys` is a key-id -> public-key dict, a folder of ``*.pub``
    files, or None for the default folder (`edge_app.signing`); a folder with root keys trusts
    the signing keys of the newest root list, the bundle's or the one the device holds at
    `root_list` (`edge_app.trust_root.bundle_trust`).

    Everything is read from one version of the bundle (`edge_app.folder_swap.current_version`,
    which `OpenedBundle.path` then is): a factory writer swapping in a new version meanwhile
    never mixes two. A read that fails while the bundle's path moved on to another version
    (that version removed under it, or a folder written before versions turned into one) is
    tried again on the new one; a failure with no swap is the bundle's own."""
    return _one_version(Path(path), lambda version: _open_version(Path(path), version, check, trusted_keys,
                                                                  root_list))


def load_bundle(path: Path, trusted_keys: dict | Path | None = None, *, check: bool = True,
                mmap: bool = True, root_list: Path | None = None) -> Bundle:
    """The device's bundle: `open_bundle` with the whole check (`check=False`: the format
    only, for the factory's own freshly written bundles), and its shards, templates and
    revocations loaded (`Bundle.of`), all from one version."""
    level = Check.SIGNATURE if check else Check.FORMAT
    return _one_version(Path(path), lambda version: Bundle.of(
        _open_version(Path(path), version, level, trusted_keys, root_list), mmap))


def _one_version(path: Path, read: Callable[[Path], _T]) -> _T:
    """`read` of the bundle's current version, again on the new one when it moved on meanwhile."""
    repair_locked(path, f"the bundle {path}")  # a factory writer's swap cut in half by a crash
    tries = 0
    while True:
        version = current_version(path)
        try:
            return read(version)
        except (PufError, OSError):
            tries += 1
            if tries > SWAP_RETRIES or current_version(path) == version:
                raise


def _open_version(named: Path, path: Path, check: Check, trusted_keys: dict | Path | None,
                  root_list: Path | None) -> OpenedBundle:
    """`open_bundle` of the version folder `path` of the bundle `named`."""
    if not path.is_dir():
        raise PufError(f"no bundle at {named}")
    written, manifest = read_written(path)
    signer, trust = None, None
    if check == Check.SIGNATURE:
        trust = Trust(trusted_keys, None) if isinstance(trusted_keys, dict) else \
            bundle_trust(path, trusted_keys, root_list)
        signer = verify_manifest(written, trust.keys, where=f"{named.name}/{MANIFEST}")  # the JSON as signed
        check_bundle_files(path, manifest)
    elif check == Check.FILES:
        verify_files(path, manifest)
    return OpenedBundle(named=named, path=path, manifest=manifest, check=check, signer=signer,
                        root_list=trust.root_list if trust else None)
