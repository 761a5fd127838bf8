"""The bundle format: its file names and its manifest, read and written here and nowhere else.

    BUNDLE/manifest.json             the manifest (`Manifest`), signed (`edge_app.signing`)
    BUNDLE/model_int8.tflite ...     the model files (`FORMAT_FILES`)
    BUNDLE/patterns.json             the pattern set (`edge_app.pattern_set.PATTERN_SET_FILE`)
    BUNDLE/pattern_templates.npz     glyph templates: orientation of handheld crops (`TEMPLATES`)
    BUNDLE/shards/pNN.faiss          one Faiss index per pattern class (`shard_paths`)
    BUNDLE/shards/pNN.ids.npy        the label ids of its rows
    BUNDLE/shards/pNN.rows.npy       a shard of kind ivf_pq_sq8: its vectors' SQ8 codes (`ShardRows`)
    BUNDLE/shards/pNN.thumbs.npy     optional: enrolled labels' thumbnails (`thumbnail_path`)
    BUNDLE/root.json                 optional: the root list, signed by root keys, not listed in
                                     the manifest (`edge_app.trust_root`, which reads it)

The manifest's parts are dataclasses (`Decision`, `ModelInfo`, `FileEntry`, `Shards`,
`ShardEntry`, `Release`); `Manifest.from_dict` checks every field a reader uses is of the
right kind and in its range (a threshold a cosine in (0, 1), sizes that agree with each
other: a malformed, even validly signed, manifest is a message naming the field, never a
crash deep in verify nor a device that accepts counterfeits) and `to_dict` gives the JSON
back. That the sizes are the model's own is `edge_app.runtime.ModelRunner`'s to check. Each part's ``extra``
keeps what it does not type (the export's parity report, a shard's tuning figures) and
typed keys written as null or empty, as they were: a manifest read and written again is
the same JSON, so its signature still holds.

Where a bundle stands among its factory's versions is signed with it: ``sequence`` (an
integer that each signing raises by one; a bundle without one counts as 0), ``created``
and, optionally, ``expires`` (ISO 8601 times, UTC). A device uses them to refuse an old
bundle replayed over a newer one, and an expired one (`edge_app.device_store`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_app.atomic_write import write_atomic
from edge_app.errors import PufError
from edge_app.preprocess import Preprocess

MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1
FORMAT_FILES = {"int8": "model_int8.tflite", "float": "model_float.tflite", "onnx": "model.onnx"}
TEMPLATES = "pattern_templates.npz"
SHARDS_FORMAT = 1  # the shards section as written when no shard has a row file
# a shard may name a row file (`ShardRows`): a device that reads only format 1 refuses such a bundle
# rather than scoring on the index's PQ codes alone
ROWS_SHARDS_FORMAT = 2
SHARDS_FORMATS = (SHARDS_FORMAT, ROWS_SHARDS_FORMAT)
MAX_RERANK_CANDIDATES = 1024
SHARDS_DIR = "shards"
THUMBNAIL_CHANNEL = "green"
MAX_EMBEDDING_DIM = 4096  # the widest fingerprint a device is asked to hold (ours: 128-512)
MAX_SEQUENCE = 2**53 - 1  # the largest whole number every JSON reader keeps exact


def shard_paths(class_index: int) -> tuple[str, str]:
    """The bundle-relative index and id-map file names of a pattern class's shard."""
    return f"{SHARDS_DIR}/p{class_index:02d}.faiss", f"{SHARDS_DIR}/p{class_index:02d}.ids.npy"


def rows_path(class_index: int) -> str:
    """The bundle-relative SQ8 row file of a pattern class's shard (kind ivf_pq_sq8)."""
    return f"{SHARDS_DIR}/p{class_index:02d}.rows.npy"


def thumbnail_path(class_index: int) -> str:
    """The bundle-relative thumbnails file of a pattern class's shard."""
    return f"{SHARDS_DIR}/p{class_index:02d}.thumbs.npy"


def outside(name: str) -> bool:
    """Whether a bundle-relative file name points out of the bundle folder."""
    return name.startswith(("/", "\\")) or ".." in Path(name).parts or Path(name).is_absolute()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_search(value: object) -> bool:
    """Faiss search parameters: each a positive whole number ({"nprobe": 8})."""
    return isinstance(value, dict) and all(_is_count(n) and n > 0 for n in value.values())


def _is_fraction(value: object) -> bool:
    """A number strictly between 0 and 1 (a cosine threshold, a false-accept rate)."""
    return _is_number(value) and 0 < value < 1  # type: ignore[operator]


class _Reader:
    """Takes the fields of one JSON object, each checked, and keeps the rest as `extra`."""

    def __init__(self, data: dict, where: str, prefix: str) -> None:
        self.data, self.where, self.prefix = data, where, prefix
        self.extra: dict[str, Any] = dict(data)

    def error(self, key: str, wanted: str) -> PufError:
        return PufError(f"{self.where}: {self.prefix}\"{key}\" must be {wanted}")

    def take(self, key: str, check=None, wanted: str = "", null_ok: bool = True) -> Any:
        """The field's value, or None when it is absent (or null, when `null_ok`: a null then
        stays in `extra`, as written); PufError when `check` refuses it."""
        if key not in self.data or (null_ok and self.data[key] is None):
            return None
        value = self.extra.pop(key)
        if check is not None and not check(value):
            raise self.error(key, wanted)
        return value


class _Part:
    """A manifest part: typed fields named as their JSON keys, and `extra` (see the module)."""

    extra: dict[str, Any]

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if item.name == "extra":
                continue
            if value is None:
                if item.name in self.extra:
                    out[item.name] = self.extra[item.name]
                continue
            out[item.name] = _plain(value)
        out.update((key, value) for key, value in self.extra.items() if key not in out)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, _Part):
        return value.to_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclass
class FileEntry(_Part):
    """A bundle file's checksum (what the signature vouches for) and size."""

    sha256: str
    bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, read: _Reader) -> FileEntry:
        if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
            raise read.error("files", 'an object of file name -> {"sha256": hex digest}')
        entry = _Reader(data, read.where, '"files" ')
        sha256 = entry.take("sha256")
        return cls(sha256, entry.take("bytes", _is_count, "a whole number of bytes"), entry.extra)

    @classmethod
    def of(cls, path: Path) -> FileEntry:
        """The entry of a file as written now."""
        return cls(sha256_file(path), Path(path).stat().st_size)


@dataclass
class ModelInfo(_Part):
    """Which model the bundle carries (the rest of what export records stays in `extra`)."""

    name: str | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> ModelInfo:
        read = _Reader(data, where, '"model" ')
        return cls(read.take("name", lambda v: isinstance(v, str), "text"),
                   read.take("version", lambda v: isinstance(v, str), "text"), read.extra)


@dataclass(kw_only=True)
class Decision(_Part):
    """The decision threshold, the FAR it was set for, and whether re-captures calibrated it
    (`puf evaluate`); how it was set stays in `extra`."""

    threshold: float | None = None
    far: float | None = None
    calibrated: bool | None = None  # absent: calibrated (bundles from before the flag)
    # what a threshold set for the deployed size was set for (`puf evaluate --query-far`): the
    # false-accept rate per counterfeit query, at this many labels (and enrolled vectors: a label's
    # copies) a shard, from the impostor score tail (`trainer.tail.Tail.to_dict`: comparisons,
    # method, fit range)
    query_far: float | None = None
    labels_per_shard: int | None = None
    vectors_per_shard: int | None = None
    # other shard sizes the same threshold was checked to hold query_far at, each {"labels": L,
    # "vectors": V} and the check's figures (`tools/threshold_from_bench.py --confirm`)
    checked_sizes: list[dict[str, Any]] | None = None
    tail: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> Decision:
        read = _Reader(data, where, '"decision" ')
        if "threshold" in data and not _is_fraction(data["threshold"]):
            raise read.error("threshold", f"a number between 0 and 1 (a cosine; exclusive), not {data['threshold']!r}")
        if "calibrated" in data and not isinstance(data["calibrated"], bool):
            raise read.error("calibrated", "true or false")
        return cls(threshold=read.take("threshold", _is_fraction, ""),
                   far=read.take("far", _is_fraction, "a number or null, a rate between 0 and 1 (exclusive)"),
                   calibrated=read.take("calibrated"),
                   query_far=read.take("query_far", _is_fraction, "a number between 0 and 1"),
                   labels_per_shard=read.take("labels_per_shard", lambda v: _is_count(v) and v >= 1,
                                              "a positive whole number"),
                   vectors_per_shard=read.take("vectors_per_shard", lambda v: _is_count(v) and v >= 1,
                                               "a positive whole number"),
                   checked_sizes=read.take("checked_sizes", _is_sizes, 'a list of objects, each with "labels" and '
                                                                       '"vectors" as positive whole numbers'),
                   tail=read.take("tail", lambda v: isinstance(v, dict), "an object"), extra=read.extra)

    @property
    def is_calibrated(self) -> bool:
        return self.calibrated is not False

    @property
    def why_not_calibrated(self) -> str:
        return str(self.extra.get("not_calibrated_because", "set at export"))


def _is_sizes(value: object) -> bool:
    """Shard sizes: [{"labels": L, "vectors": V, ...}], each count a positive whole number."""
    return isinstance(value, list) and all(
        isinstance(size, dict) and all(_is_count(size.get(n)) and size[n] >= 1 for n in ("labels", "vectors"))
        for size in value)


def _is_numbers(value: object) -> bool:
    return isinstance(value, list) and len(value) >= 1 and all(_is_number(v) for v in value)


@dataclass(kw_only=True)
class ShardRows(_Part):
    """A shard's SQ8 rows (kind ivf_pq_sq8, `edge_app.shards.Reranked`): its index's PQ codes
    find `candidates` rows, and the verdict's score comes from their 8-bit codes, read from
    `file` (a .npy of (vectors, dim) uint8), each decoded as vmin + (code + 0.5) / 255 * vdiff
    per dimension, as Faiss's SQ8 decodes them."""

    file: str
    vmin: list[float]
    vdiff: list[float]
    candidates: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, pattern: str, data: object, where: str) -> ShardRows:
        if not isinstance(data, dict) or not isinstance(data.get("file"), str):
            raise PufError(f'{where}: shard {pattern!r} "rows" must be an object naming its "file"')
        read = _Reader(data, where, f'"shards" {pattern!r} "rows" ')
        file = read.take("file")
        vmin = read.take("vmin", _is_numbers, "a list of numbers, one a dimension", null_ok=False)
        vdiff = read.take("vdiff", lambda v: _is_numbers(v) and min(v) >= 0,
                          "a list of numbers >= 0, one a dimension", null_ok=False)
        candidates = read.take("candidates", lambda v: _is_count(v) and 1 <= v <= MAX_RERANK_CANDIDATES,
                               f"a whole number of rows, 1-{MAX_RERANK_CANDIDATES}", null_ok=False)
        if vmin is None or vdiff is None or candidates is None or len(vmin) != len(vdiff):
            raise read.error("vmin", 'a list as long as "vdiff", both present, with "candidates"')
        return cls(file=file, vmin=vmin, vdiff=vdiff, candidates=candidates, extra=read.extra)

    @classmethod
    def of(cls, file: str, vmin, vdiff, candidates: int) -> ShardRows:
        """The entry of a row file whose SQ8 range is the float32 arrays `vmin`, `vdiff`: each
        written as the shortest decimal that reads back as the same float32."""
        def shortest(values) -> list[float]:
            return [float(str(v)) for v in values]

        return cls(file=file, vmin=shortest(vmin), vdiff=shortest(vdiff), candidates=int(candidates))


@dataclass(kw_only=True)
class ShardEntry(_Part):
    """One pattern class's shard: its files and sizes; its index's tuning stays in `extra`."""

    index: str
    ids: str
    thumbnails: str | None = None
    vectors: int | None = None
    labels: int | None = None
    search: dict[str, Any] | None = None  # parameters Faiss searches with (an IVF's nprobe)
    rows: ShardRows | None = None  # kind ivf_pq_sq8: the SQ8 rows its candidates are scored from
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, pattern: str, data: object, where: str) -> ShardEntry:
        if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("index", "ids")):
            raise PufError(f'{where}: each of "shards" "classes" must be an object naming its "index" and "ids" files')
        read = _Reader(data, where, f'"shards" {pattern!r} ')
        index, ids = read.take("index"), read.take("ids")
        thumbnails = read.take("thumbnails")
        if thumbnails is not None and not isinstance(thumbnails, str):
            raise PufError(f"{where}: shard {pattern!r} names the thumbnails file {thumbnails!r}, which is not one "
                           "of the bundle's signed files")
        return cls(index=index, ids=ids, thumbnails=thumbnails,
                   vectors=read.take("vectors", _is_count, "a whole number"),
                   labels=read.take("labels", _is_count, "a whole number"),
                   search=read.take("search", _is_search,
                                    'an object of search parameters, each a positive whole number ({"nprobe": 8})'),
                   rows=ShardRows.from_dict(pattern, read.take("rows"), where) if data.get("rows") is not None
                   else None, extra=read.extra)

    def named_files(self) -> dict[str, str | None]:
        """The files this entry names, by field (thumbnails and rows None when it has none)."""
        return {"index": self.index, "ids": self.ids, "thumbnails": self.thumbnails,
                "rows": self.rows.file if self.rows else None}


@dataclass(kw_only=True)
class Shards(_Part):
    """The manifest's ``"shards"``: one Faiss index per pattern class (`edge_app.shards`)."""

    format: int | None = None
    metric: str | None = None
    embedding_dim: int | None = None
    model_format: str | None = None  # the model the labels were enrolled with
    classes: dict[str, ShardEntry] | None = None
    vectors: int | None = None
    labels: int | None = None
    memory_budget_mb: float | None = None
    thumbnails: dict[str, Any] | None = None  # {"px": 64, "channel": "green"} (`edge_app.thumbnails`)
    enrollments: list[dict[str, Any]] | None = None  # one record per `puf enroll` that added labels
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, where: str) -> Shards:
        if not isinstance(data, dict) or not isinstance(data.get("classes", {}), dict):
            raise PufError(f'{where}: "shards" must be an object with "classes": pattern -> its shard files')
        read = _Reader(data, where, '"shards" ')
        classes = read.take("classes")
        entries = {p: ShardEntry.from_dict(p, e, where) for p, e in classes.items()} if classes is not None else None
        model_format = data.get("model_format")
        if model_format is not None and not isinstance(model_format, str):
            raise read.error("model_format", f"one of {sorted(FORMAT_FILES)}")
        found = data.get("format")
        if found not in SHARDS_FORMATS:
            raise PufError(f"the bundle's shards are of format {found!r}; this device reads formats "
                           f"{', '.join(map(str, SHARDS_FORMATS))}")
        _check_rows(entries or {}, found, data.get("embedding_dim"), where)
        return cls(format=read.take("format"), metric=read.take("metric", lambda v: isinstance(v, str), "text"),
                   embedding_dim=read.take("embedding_dim", _is_dim,
                                           f"a positive whole number, at most {MAX_EMBEDDING_DIM}"),
                   model_format=read.take("model_format"),
                   classes=entries, vectors=read.take("vectors", _is_count, "a whole number"),
                   labels=read.take("labels", _is_count, "a whole number"),
                   memory_budget_mb=read.take("memory_budget_mb", lambda v: _is_number(v) and v > 0,
                                              "a number above 0"),
                   thumbnails=read.take("thumbnails", lambda v: isinstance(v, dict), "an object"),
                   enrollments=read.take("enrollments", lambda v: isinstance(v, list), "a list"), extra=read.extra)

    @property
    def entries(self) -> dict[str, ShardEntry]:
        return self.classes or {}

    def format_needed(self) -> int:
        """The format its shards need: ROWS_SHARDS_FORMAT once one names a row file."""
        return ROWS_SHARDS_FORMAT if any(e.rows for e in self.entries.values()) else SHARDS_FORMAT


def _check_rows(entries: dict[str, ShardEntry], found: object, dim: object, where: str) -> None:
    """Row files only in a section of ROWS_SHARDS_FORMAT, and their SQ8 range one number a dimension."""
    for pattern, entry in entries.items():
        if entry.rows is None:
            continue
        if found != ROWS_SHARDS_FORMAT:
            raise PufError(f"{where}: shard {pattern!r} names a row file, which shards of format {found!r} do "
                           f"not have (format {ROWS_SHARDS_FORMAT} does)")
        if isinstance(dim, int) and len(entry.rows.vmin) != dim:
            raise PufError(f'{where}: shard {pattern!r} "rows" has an SQ8 range of {len(entry.rows.vmin)} '
                           f"dimensions; the shards hold {dim}")


@dataclass(frozen=True)
class Release:
    """A bundle's place among the versions its factory signed (see the module's docstring)."""

    sequence: int
    created: datetime | None
    expires: datetime | None

    @classmethod
    def of(cls, manifest: dict) -> Release:
        """The release fields of a manifest's JSON; PufError naming the one that is not usable."""
        sequence = manifest.get("sequence", 0)
        if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= MAX_SEQUENCE:
            raise PufError(f"{MANIFEST}: sequence must be a whole number >= 0 and <= {MAX_SEQUENCE}, got {sequence!r}")
        return cls(sequence, _time(manifest, "created"), _time(manifest, "expires"))

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires

    def refuse_expired(self, what: str, then: str = "") -> None:
        """A PufError saying `what` expired (and `then`, what it means), when it has."""
        if self.expired():
            raise PufError(f"{what} expired on {self.expires:%Y-%m-%d %H:%M} UTC: ask the factory for a current "
                           f"one{then}")

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
    return None if value is None else parse_time(value, f"{MANIFEST}: {key}")


def parse_time(value: object, what: str) -> datetime:
    """A time as `utc_text` writes it (any ISO 8601 time with its zone); PufError naming `what`."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PufError(f"{what} must be an ISO 8601 time with its zone (2026-03-02T10:04:05Z), got {value!r}")
    return moment


def _is_names(value: object) -> bool:
    return (isinstance(value, list) and len(value) >= 1 and all(isinstance(n, str) and n for n in value)
            and len(set(value)) == len(value))


def _is_dim(value: object) -> bool:
    return _is_count(value) and 1 <= value <= MAX_EMBEDDING_DIM  # type: ignore[operator]


def _check_input(found: object, shape: list[int], read: _Reader) -> None:
    """The model input export records ({"shape": [H, W, C]}) is the preprocessing's, when recorded."""
    if found is not None and not (isinstance(found, dict) and found.get("shape") == shape):
        raise read.error("input", f'{{"shape": {shape}}}, the preprocessing\'s input size, not {found!r}')


def _check_shards_agree(shards: Shards, dim: int | None, classes: list[str] | None, read: _Reader) -> None:
    """The shards hold vectors of the manifest's embedding size, for patterns it names."""
    if shards.embedding_dim is not None and dim is not None and shards.embedding_dim != dim:
        raise read.error("shards", f"of the manifest's embedding_dim {dim}, not {shards.embedding_dim}")
    unknown = sorted(set(shards.entries) - set(classes or []))
    if classes is not None and unknown:
        raise read.error("shards", f"for the manifest's pattern_classes, not for {unknown[0]!r}")


@dataclass(kw_only=True)
class Manifest(_Part):
    """A bundle's manifest (see the module's docstring). Presence of what a device needs
    (shards, a threshold) is `edge_app.bundle.load_bundle`'s to check: here a field may be
    absent, but never of the wrong kind."""

    format_version: int = BUNDLE_FORMAT
    model: ModelInfo | None = None
    default_format: str | None = None  # absent: int8
    preprocessing: dict[str, Any] | None = None  # `edge_app.preprocess.Preprocess`, as written
    embedding_dim: int | None = None
    pattern_classes: list[str] | None = None
    decision: Decision | None = None
    files: dict[str, FileEntry] | None = None
    shards: Shards | None = None
    sequence: int | None = None  # `Release`
    created: str | None = None
    expires: str | None = None
    signature: dict[str, Any] | None = None  # `edge_app.signing`; checked against the JSON as written
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, where: str = MANIFEST) -> Manifest:
        """The manifest of a bundle's JSON; a PufError naming the file and the field otherwise."""
        if not isinstance(data, dict):
            raise PufError(f"{where} is not a bundle manifest (a JSON object), it holds a {type(data).__name__}")
        try:  # strict JSON only: what cannot be signed (NaN, infinity) is refused on reading, in any field
            json.dumps(data, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as error:
            raise PufError(f"{where} is not a bundle manifest: {error}") from None
        if data.get("format_version") != BUNDLE_FORMAT:
            raise PufError(f"{where}: bundle format {data.get('format_version')!r}, this device "
                           f"reads format {BUNDLE_FORMAT}")
        read = _Reader(data, where, "")
        version = read.take("format_version")
        files = data.get("files", {})
        if not isinstance(files, dict):
            raise read.error("files", 'an object of file name -> {"sha256": hex digest}')
        entries = {name: FileEntry.from_dict(entry, read) for name, entry in files.items()}
        read.take("files")
        if not isinstance(data.get("model", {}), dict):
            raise read.error("model", "an object")
        model = read.take("model")
        default_format = read.take("default_format", lambda v: isinstance(v, str), f"one of {sorted(FORMAT_FILES)}",
                                   null_ok=False)
        classes = read.take("pattern_classes", _is_names, "a list of distinct pattern names", null_ok=False)
        dim = read.take("embedding_dim", _is_dim, f"a positive whole number, at most {MAX_EMBEDDING_DIM}",
                        null_ok=False)
        params = Preprocess.from_dict(data.get("preprocessing", {}))
        preprocessing = read.take("preprocessing")
        _check_input(data.get("input"), list(params.input_shape), read)
        decision = data.get("decision") or {}
        if not isinstance(decision, dict):
            raise read.error("decision", "an object")
        decision = Decision.from_dict(decision, where) if decision else None
        if decision is not None:
            read.extra.pop("decision")
        shards = data.get("shards")
        shards = Shards.from_dict(shards, where) if shards not in (None, {}) else None
        if shards is not None:
            read.extra.pop("shards")
            _check_shards_agree(shards, dim, classes, read)
        Release.of(data)  # refused here, not at first use
        signature = read.take("signature") if isinstance(
            data.get("signature"), dict) else None
        return cls(format_version=version, model=ModelInfo.from_dict(model, where) if model is not None else None,
                   default_format=default_format, preprocessing=preprocessing, embedding_dim=dim,
                   pattern_classes=classes, decision=decision, files=entries if "files" in data else None,
                   shards=shards, sequence=read.take("sequence"), created=read.take("created"),
                   expires=read.take("expires"), signature=signature, extra=read.extra)

    @classmethod
    def read(cls, bundle: Path) -> Manifest:
        """The manifest of the bundle folder `bundle`, read and parsed once (`read_written`);
        a reader that also checks the bundle opens it with `edge_app.bundle.open_bundle`."""
        return read_written(bundle)[1]

    def write(self, folder: Path) -> None:
        """Write FOLDER/manifest.json (UTF-8; the signature covers `edge_app.signing.canonical_bytes`)."""
        write_atomic(Path(folder) / MANIFEST, json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

    # ---- what readers ask -----------------------------------------------------------------
    @property
    def release(self) -> Release:
        return Release.of({"sequence": self.sequence or 0, "created": self.created, "expires": self.expires})

    @property
    def file_entries(self) -> dict[str, FileEntry]:
        return self.files or {}

    @property
    def threshold(self) -> float | None:
        return float(self.decision.threshold) if self.decision and self.decision.threshold is not None else None

    @property
    def model_format(self) -> str:
        """The format the device runs unless told otherwise."""
        return self.default_format or "int8"

    @property
    def signer(self) -> str | None:
        """The id of the key the manifest says signed it (checked by `edge_app.signing`)."""
        key = (self.signature or {}).get("key_id")
        return key if isinstance(key, str) else None

    def check_named_files(self) -> None:
        """Every file the shard entries name (index, id map, thumbnails) is one of the signed
        files, inside the bundle: a signed manifest must never make the device read a file
        elsewhere, or one whose checksum was not checked."""
        files = self.file_entries
        for pattern, entry in (self.shards.entries if self.shards else {}).items():
            for role, name in entry.named_files().items():
                if role in ("thumbnails", "rows") and name is None:
                    continue  # optional files
                if name is None or outside(name) or name not in files:
                    raise PufError(f"{MANIFEST}: shard {pattern!r} names the {role} file {name!r}, which is not "
                                   f"one of the bundle's signed files")


def read_written(bundle: Path) -> tuple[dict, Manifest]:
    """The bundle's manifest.json read once: the JSON as written (what its signature covers)
    and the `Manifest` parsed from it, once; a PufError naming the file and the field otherwise."""
    path = Path(bundle) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PufError(f"{bundle} is not a model bundle: no {MANIFEST}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise PufError(f"cannot read {path}: {error}") from None
    return data, Manifest.from_dict(data, str(path))


def read_manifest(bundle: Path) -> dict:
    """The JSON of the bundle's manifest as written, checked to be a `Manifest` (`read_written`)."""
    return read_written(bundle)[0]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(bundle: Path, manifest: Manifest, names: list[str] | None = None) -> None:
    """Refuse a bundle whose files do not match the manifest's checksums, naming the file
    (the manifest's own signature is `edge_app.bundle.load_bundle`'s to check)."""
    files = manifest.file_entries
    for name in names if names is not None else sorted(files):
        if name not in files:
            raise PufError(f"{name} is not listed in the bundle manifest")
        path = Path(bundle) / name
        if not path.exists():
            raise PufError(f"bundle file {name} is missing from {bundle}")
        if sha256_file(path) != files[name].sha256:
            raise PufError(f"bundle file {name} does not match its checksum: the bundle is "
                           "corrupt or was altered")
