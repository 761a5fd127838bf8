"""Open a signed bundle on the device, refusing one that is not exactly what was signed.

    BUNDLE/manifest.json           signed (Ed25519) manifest: model, preprocessing, pattern
                                   classes, decision threshold, shards, sha256 of every file
    BUNDLE/model_int8.tflite ...   the model files `puf export` wrote
    BUNDLE/pattern_templates.npz   glyph templates: orientation of handheld crops
    BUNDLE/shards/pNN.faiss        one Faiss index per pattern class (`edge_app.shards`)
    BUNDLE/shards/pNN.ids.npy      the label ids of its rows

Where a bundle stands among its factory's versions is signed with it: ``sequence`` (an
integer that each signing raises by one; a bundle without one counts as 0), ``created``
and, optionally, ``expires`` (ISO 8601 times, UTC). A device uses them to refuse an old
bundle replayed over a newer one, and an expired one (`edge_app.device_store`).

Loading checks, in order: the manifest's format; its signature against the trusted keys
(so its list of checksums can be believed); that every listed file is there with its
sha256; and that no file is there that the manifest does not list. An unlisted file
could not change a verdict (nothing unlisted is ever read), but it means the folder is
not the bundle that was signed, a mix of two versions or a planted file, and a refusal
that names it is cheaper to act on than a device that quietly ignores it. Every
refusal is a PufError naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_app.errors import PufError
from edge_app.runtime import FORMAT_FILES, MANIFEST, ModelRunner, read_manifest, verify_files

TEMPLATES = "pattern_templates.npz"
SHARD_FILE_FIELDS = ("index", "ids", "thumbnails")  # the files a shard entry names


def unlisted_files(bundle: Path, manifest: dict) -> list[str]:
    """Files in the bundle folder that the manifest does not list (bundle-relative)."""
    listed = set(manifest.get("files", {})) | {MANIFEST}
    found = sorted(p.relative_to(bundle).as_posix() for p in Path(bundle).rglob("*")
                   if p.is_file() or p.is_symlink())
    return [name for name in found if name not in listed]


def outside(name: str) -> bool:
    """Whether a bundle-relative file name points out of the bundle folder."""
    return name.startswith(("/", "\\")) or ".." in Path(name).parts or Path(name).is_absolute()


def check_named_files(manifest: dict) -> None:
    """Every file the manifest's shard entries name (index, id map, thumbnails) is one of
    its signed files, inside the bundle: a signed manifest must never make the device read
    a file elsewhere, or one whose checksum was not checked."""
    files = manifest.get("files")
    files = files if isinstance(files, dict) else {}
    section = manifest.get("shards")
    classes = section.get("classes") if isinstance(section, dict) else None
    for pattern, entry in (classes.items() if isinstance(classes, dict) else ()):
        if not isinstance(entry, dict):
            raise PufError(f"{MANIFEST}: shard {pattern!r} is not an object")
        for field in SHARD_FILE_FIELDS:
            name = entry.get(field)
            if field == "thumbnails" and name is None:
                continue  # thumbnails are optional
            if not isinstance(name, str) or outside(name) or name not in files:
                raise PufError(f"{MANIFEST}: shard {pattern!r} names the {field} file {name!r}, which is not "
                               f"one of the bundle's signed files")


def check_bundle_files(bundle: Path, manifest: dict) -> None:
    """Every listed file present and matching its sha256, and nothing else; PufError naming
    the first file that fails."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise PufError(f"{MANIFEST} lists no files")
    for name in files:
        if outside(name):
            raise PufError(f"{MANIFEST} lists {name!r}, which is outside the bundle")
    verify_files(bundle, manifest)
    extra = unlisted_files(bundle, manifest)
    if extra:
        raise PufError(f"bundle file {extra[0]} is not listed in the signed manifest"
                       + (f" (nor are {len(extra) - 1} more)" if len(extra) > 1 else "")
                       + ": the folder is not the bundle that was signed")


@dataclass(frozen=True)
class Release:
    """A bundle's place among the versions its factory signed (see the module's docstring)."""

    sequence: int
    created: datetime | None
    expires: datetime | None

    @classmethod
    def of(cls, manifest: dict) -> Release:
        """The manifest's release fields; PufError naming the one that is not usable."""
        sequence = manifest.get("sequence", 0)
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise PufError(f"{MANIFEST}: sequence must be a whole number >= 0, got {sequence!r}")
        return cls(sequence, _time(manifest, "created"), _time(manifest, "expires"))

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires

    def describe(self) -> str:
        """E.g. "sequence 4, signed 2026-03-02, expires 2026-06-01"."""
        parts = [f"sequence {self.sequence}"]
        if self.created is not None:
            parts.append(f"signed {self.created:%Y-%m-%d}")
        if self.expires is not None:
            parts.append(f"expires {self.expires:%Y-%m-%d}")
        return ", ".join(parts)


def utc_text(moment: datetime) -> str:
    """How a release time is written: ISO 8601 in UTC, to the second (2026-03-02T10:04:05Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(manifest: dict, key: str) -> datetime | None:
    value = manifest.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PufError(f"{MANIFEST}: {key} must be an ISO 8601 time with its zone (2026-03-02T10:04:05Z), "
                       f"got {value!r}")
    return moment


@dataclass
class Bundle:
    path: Path
    manifest: dict
    signer: str | None  # the trusted key that signed it (None: opened without checking)
    shards: object  # edge_app.shards.ShardSet
    templates: object | None  # edge_app.orientation.PatternTemplates

    @property
    def release(self) -> Release:
        return Release.of(self.manifest)

    @property
    def threshold(self) -> float:
        return float(self.manifest["decision"]["threshold"])

    @property
    def far(self) -> float | None:
        return self.manifest.get("decision", {}).get("far")

    @property
    def uncalibrated_warning(self) -> str | None:
        """Why the threshold cannot be trusted yet, when export marked it not calibrated
        (`puf evaluate` on re-captures calibrates it); None otherwise."""
        decision = self.manifest.get("decision") or {}
        if decision.get("calibrated", True):
            return None
        return (f"the bundle's threshold {self.threshold:g} is not calibrated "
                f"({decision.get('not_calibrated_because', 'set at export')}): verdicts may accept counterfeits")

    @property
    def pattern_classes(self) -> list[str]:
        return list(self.manifest["pattern_classes"])

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    def model_file(self, fmt: str | None = None) -> Path:
        fmt = fmt or self.manifest.get("default_format", "int8")
        if fmt not in FORMAT_FILES:
            raise PufError(f"model format must be one of {sorted(FORMAT_FILES)}, got {fmt!r}")
        if FORMAT_FILES[fmt] not in self.manifest.get("files", {}):
            raise PufError(f"the bundle {self.path} has no {fmt} model ({FORMAT_FILES[fmt]})")
        return self.path / FORMAT_FILES[fmt]

    def runner(self, fmt: str | None = None, num_threads: int = 2) -> ModelRunner:
        """The bundle's model (its default format unless `fmt`), checked when the bundle was."""
        from edge_app.preprocess import Preprocess

        return ModelRunner(self.model_file(fmt), num_threads, self.embedding_dim,
                           len(self.pattern_classes), Preprocess.from_dict(self.manifest["preprocessing"]))


def load_bundle(path: Path, trusted_keys: dict | Path | None = None, *, check: bool = True,
                mmap: bool = True) -> Bundle:
    """Open and check a bundle. `trusted_keys` is a key-id -> public-key dict, a folder of
    ``*.pub`` files, or None for the default folder (`edge_app.signing`). `check=False`
    skips signature and checksums: only for the factory's own freshly written bundles."""
    from edge_app.folder_swap import repair_locked
    from edge_app.orientation import PatternTemplates
    from edge_app.shards import ShardSet
    from edge_app.signing import load_trusted_keys, verify_manifest

    path = Path(path)
    repair_locked(path, f"the bundle {path}")  # a factory writer's swap cut in half by a crash
    if not path.is_dir():
        raise PufError(f"no bundle at {path}")
    manifest = read_manifest(path)
    signer = None
    if check:
        trusted = trusted_keys if isinstance(trusted_keys, dict) else load_trusted_keys(trusted_keys)
        signer = verify_manifest(manifest, trusted, where=f"{path.name}/{MANIFEST}")
        check_bundle_files(path, manifest)
    Release.of(manifest)  # refused here, not at first use
    section = manifest.get("shards")
    if not section:
        raise PufError(f"the bundle {path} has no enrolled labels (no shards): run puf enroll")
    check_named_files(manifest)
    if "threshold" not in (manifest.get("decision") or {}):
        raise PufError(f"{MANIFEST} has no decision threshold")
    for field in ("pattern_classes", "embedding_dim", "preprocessing"):
        if field not in manifest:
            raise PufError(f"{MANIFEST} has no {field!r}")
    templates = PatternTemplates.load(path / TEMPLATES) if TEMPLATES in manifest.get("files", {}) else None
    return Bundle(path, manifest, signer, ShardSet.load(path, section, mmap), templates)
