"""Fingerprints at scale in Milvus: every enrolled vector of every product and region, from
which each region's device bundle is exported (`trainer.region_export`).

One store, two engines, one API (pymilvus's `MilvusClient`): a Milvus Lite folder
(``fingerprints.db``, embedded, no server: the default) or a Milvus server or cluster by URI
(``http://host:19530``) when a brand outgrows one machine.

* One collection per embedding model, named from the sha256 of the model file that embeds
  (``fp_<24 hex>``): fingerprints of two models never mix, and every bundle of one model (as
  enrollments re-sign it) finds the same collection.
* One partition per product/region (``r_<product>_<region>``): a region's export or search
  reads only its own rows. Milvus allows 1,024 partitions a collection by default (a server
  setting raises it). The pattern class is a field, filtered on: a shard of the bundle is
  one (partition, pattern).
* A row is keyed ``product/region/label_id/copy``, so writing a batch again replaces its
  rows (upsert): enrollment re-runs converge instead of duplicating labels.

Values reach Milvus's filter expressions only as JSON string literals (`_literal`), never
pasted in: a label id or pattern name cannot change what a filter selects. Label ids, products
and regions are ids of `edge_app.ids`'s grammar, checked as they come in and as they are read
back: a row a store took before the grammar (a quote or a backslash in its id) stops an export
with an error naming the id, and so does a page that does not move past the last one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.bundle_format import FORMAT_FILES, Manifest
from edge_app.errors import PufError, require_module
from edge_app.ids import check_id

DEFAULT_PRODUCT = "main"  # a brand with one product names none
MAX_ID_CHARS = 64  # a label id (`edge_app.ids`) or pattern name, characters
_SERVER = ("http://", "https://", "tcp://", "unix:")
WRITE_ROWS = 2000  # rows a request: well under Milvus's 64 MB message limit at 512 dimensions
READ_ROWS = 16384  # rows a page: Milvus's most a query returns (its maxQueryResultWindow); 33 MB at 512-d
# Milvus Lite 3.2.2, in Python, answers each page with a pass (mask and key sort) over all of the
# partition's rows, then encodes the page's rows: seconds a row a pass, and a row encoded, solved
# from its reads of 100,000 rows in 7 pages and in 25 in one run (tools/results/bench_milvus_export.md;
# 2 cores, loaded)
LITE_PASS_SECONDS_PER_ROW = 1.47e-4
LITE_SECONDS_PER_ROW = 1.14e-3
FIELDS = ("key", "label_id", "pattern", "copy", "vector")


@dataclass(frozen=True)
class Region:
    """Where a label is sold: a product and a region of it, each letters and digits."""

    product: str
    region: str

    def __post_init__(self) -> None:
        check_id("product", self.product)
        check_id("region", self.region)

    @property
    def partition(self) -> str:
        return f"r_{self.product}_{self.region}"

    def __str__(self) -> str:
        return f"{self.product}/{self.region}"


def collection_name(manifest: Manifest, model_format: str) -> str:
    """The collection of the fingerprints a bundle's `model_format` model computes."""
    entry = manifest.file_entries.get(FORMAT_FILES.get(model_format, ""))
    if entry is None:
        raise PufError(f"the bundle has no {model_format} model to name its fingerprints' collection by")
    return f"fp_{entry.sha256[:24]}"


def _literal(value: str | Sequence[str]) -> str:
    """A value as a Milvus expression literal (JSON quoting: Milvus's own string escapes)."""
    return json.dumps(value if isinstance(value, str) else list(value), ensure_ascii=False)


def _check_pattern(value: str) -> None:
    if not value or len(value) > MAX_ID_CHARS:
        raise PufError(f"pattern {value!r} must be 1-{MAX_ID_CHARS} characters to go into the fingerprint store")


def _check_uri(uri: str) -> str:
    uri = str(uri)
    if uri.startswith(_SERVER):
        return uri
    if not uri.endswith(".db"):
        raise PufError(f"{uri!r} is neither a Milvus server URI (http://host:19530) nor a Milvus Lite store "
                       "(a path ending in .db)")
    if not Path(uri).parent.is_dir():
        raise PufError(f"no folder {Path(uri).parent} for the Milvus Lite store {uri}")
    return uri


def _redacted(uri: str) -> str:
    """The URI without any user:password@ (reports and manifests name the store, never its secret)."""
    return re.sub(r"//[^/@]*@", "//", uri)


@dataclass(frozen=True)
class Page:
    """Rows of a region as read (`FingerprintStore.pages`), a column a field, in key order."""

    keys: list[str]
    label_ids: list[str]
    patterns: list[str]
    copies: np.ndarray  # int64
    vectors: np.ndarray  # (rows, dim) float32

    def __len__(self) -> int:
        return len(self.keys)


class FingerprintStore:
    """A connection to the store: `with FingerprintStore("fingerprints.db") as store: ...`."""

    def __init__(self, uri: str) -> None:
        require_module("pymilvus", "central")
        from pymilvus import MilvusClient, MilvusException

        self.uri = _redacted(_check_uri(uri))
        self._error = MilvusException
        try:
            self.client = MilvusClient(str(uri))
        except MilvusException as error:
            raise PufError(f"cannot open the fingerprint store {self.uri}: {error.message}") from None

    @property
    def lite(self) -> bool:
        """Milvus Lite (a .db folder), not a server."""
        return not self.uri.startswith(_SERVER)

    def read_seconds(self, rows: int) -> float:
        """About how long Milvus Lite takes to read a region of `rows` rows (`pages`): a pass
        over all of them a page, so it grows with the square of `rows`; 0 on a server, which
        answers a page from its segments."""
        if not self.lite:
            return 0.0
        return (math.ceil(rows / READ_ROWS) * LITE_PASS_SECONDS_PER_ROW + LITE_SECONDS_PER_ROW) * rows

    def __enter__(self) -> FingerprintStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def _call(self, what: str, call, *args, **kwargs):
        """A pymilvus call, its failure a PufError naming the store."""
        try:
            return call(*args, **kwargs)
        except self._error as error:
            raise PufError(f"the fingerprint store {self.uri} failed to {what}: {error.message}") from None

    # ---- collections and partitions -----------------------------------------------------

    def open_collection(self, name: str, dim: int, create: bool) -> bool:
        """Load collection `name` of `dim`-d fingerprints, creating it when `create`; False
        when it does not exist and is not to be created."""
        from pymilvus import DataType, MilvusClient

        if not self._call("list its collections", self.client.has_collection, name):
            if not create:
                return False
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, max_length=4 * MAX_ID_CHARS, is_primary=True)
            schema.add_field("label_id", DataType.VARCHAR, max_length=MAX_ID_CHARS)
            schema.add_field("pattern", DataType.VARCHAR, max_length=MAX_ID_CHARS)
            schema.add_field("copy", DataType.INT32)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            index = self.client.prepare_index_params()
            # fingerprints are L2-normalised: inner product is cosine, as in the bundle's shards
            index.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 128})
            # Strong: a read sees every write before it (a server's default, Bounded, may not;
            # Milvus Lite is always strong)
            self._call("create a collection", self.client.create_collection, name, schema=schema,
                       index_params=index, consistency_level="Strong")
        found = self._call("describe a collection", self.client.describe_collection, name)
        have = next(f["params"]["dim"] for f in found["fields"] if f["name"] == "vector")
        if int(have) != dim:
            raise PufError(f"the store's collection {name} holds {have}-d fingerprints, the model gives {dim}-d")
        self._call("load a collection", self.client.load_collection, name)
        return True

    def _partition(self, collection: str, region: Region, create: bool) -> bool:
        if self._call("list partitions", self.client.has_partition, collection, region.partition):
            return True
        if create:
            self._call("create a partition", self.client.create_partition, collection, region.partition)
        return create

    # ---- writing and reading ------------------------------------------------------------

    def upsert(self, collection: str, region: Region, label_ids: Sequence[str], patterns: Sequence[str],
               vectors: np.ndarray, copies: int = 1) -> int:
        """Write the fingerprints of `label_ids` (vectors row `i * copies + c` is copy c of
        label i), replacing any the store holds under the same keys; returns the rows written."""
        if len(label_ids) != len(patterns) or len(vectors) != len(label_ids) * copies:
            raise PufError(f"{len(vectors)} fingerprints do not match {len(label_ids)} labels x {copies} copies")
        for label_id, pattern in zip(label_ids, patterns, strict=True):
            check_id("label", label_id)
            _check_pattern(pattern)
        self._partition(collection, region, create=True)
        vectors = np.ascontiguousarray(vectors, np.float32)
        rows = [{"key": f"{region}/{label_ids[i // copies]}/{i % copies}", "label_id": label_ids[i // copies],
                 "pattern": patterns[i // copies], "copy": i % copies, "vector": vectors[i]}
                for i in range(len(vectors))]
        for start in range(0, len(rows), WRITE_ROWS):
            self._call("write fingerprints", self.client.upsert, collection, rows[start:start + WRITE_ROWS],
                       partition_name=region.partition)
        return len(rows)

    def label_ids(self, collection: str, region: Region, among: Sequence[str]) -> set[str]:
        """Those of `among` that the store holds for `region`."""
        for label_id in among:
            check_id("label", label_id)
        if not among or not self._partition(collection, region, create=False):
            return set()
        found: set[str] = set()
        for start in range(0, len(among), 1000):
            rows = self._call("look up labels", self.client.query, collection,
                              filter=f"label_id in {_literal(among[start:start + 1000])} and copy == 0",
                              output_fields=["label_id"], partition_names=[region.partition])
            found.update(row["label_id"] for row in rows)
        return found

    def count(self, collection: str, region: Region, pattern: str | None = None) -> int:
        """Fingerprints of `region` (of one pattern class when given)."""
        if not self._partition(collection, region, create=False):
            return 0
        where = f"pattern == {_literal(pattern)}" if pattern is not None else ""
        [row] = self._call("count fingerprints", self.client.query, collection, filter=where,
                           output_fields=["count(*)"], partition_names=[region.partition])
        return int(row["count(*)"])

    def pages(self, collection: str, region: Region, rows: int = READ_ROWS) -> Iterator[Page]:
        """Every row of `region`, `rows` at most a page, in one scan of its partition by key:
        an export splits them by pattern as they come (`trainer.pattern_spill`) instead of
        scanning the partition once a pattern. Each page's label ids are checked, and its keys
        must rise and start past the last page's (the next page is asked for past its last
        key), so no row is skipped or read twice and there are never more pages than rows; a
        PufError otherwise (see the module's docstring)."""
        if not self._partition(collection, region, create=False):
            return
        last: str | None = None
        while page := self._page(collection, region, last, rows):
            for label_id in page.label_ids:
                self._check_stored(label_id, region)
            keys = page.keys
            if (last is not None and keys[0] <= last) or keys != sorted(set(keys)):
                raise PufError(f"the fingerprint store {self.uri} gave the fingerprints of {region} out of key order "
                               f"(after {last!r}): its paging cannot be followed; nothing read")
            last = keys[-1]
            yield page

    def _page(self, collection: str, region: Region, after: str | None, rows: int) -> Page:
        """The first `rows` rows of `region` by key past `after`, decoded column by column.

        pymilvus's `query` and `query_iterator` turn each row into a dict, its vector into
        Python floats (about 250 us a row, most of an export's read); the reply itself is
        columnar, so this sends the request pymilvus's query iterator sends (its `iterator`
        and `reduce_stop_for_best` options: rows in key order) through the client's
        connection and decodes the reply's fields straight into numpy. These are pymilvus
        internals, pinned by constraints.txt and exercised on both engines by the tests."""
        import grpc
        from pymilvus.client.prepare import Prepare
        from pymilvus.client.utils import check_status

        connection = self.client._get_connection()
        request = Prepare.query_request(collection, "" if after is None else f"key > {_literal(after)}", list(FIELDS),
                                        [region.partition], limit=rows, iterator="True",
                                        reduce_stop_for_best="True")
        try:
            reply = connection._stub.Query(request, metadata=self.client._generate_call_context().to_grpc_metadata())
        except grpc.RpcError as error:
            raise PufError(f"the fingerprint store {self.uri} failed to read fingerprints: {error.details()}") from None
        self._call("read fingerprints", check_status, reply.status)
        columns = {field.field_name: field for field in reply.fields_data}
        keys = list(columns["key"].scalars.string_data.data) if "key" in columns else []
        if not keys:
            return Page([], [], [], np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
        vectors = np.asarray(columns["vector"].vectors.float_vector.data, np.float32)
        return Page(keys, list(columns["label_id"].scalars.string_data.data),
                    list(columns["pattern"].scalars.string_data.data),
                    np.asarray(columns["copy"].scalars.int_data.data, np.int64),
                    vectors.reshape(len(keys), int(columns["vector"].vectors.dim)))

    def _check_stored(self, label_id: str, region: Region) -> None:
        try:
            check_id("label", label_id)
        except PufError as error:
            raise PufError(f"the fingerprint store {self.uri} holds a fingerprint of {region} whose {error} (written "
                           "before ids were checked): delete it, and enroll the label under an id of that grammar; "
                           "nothing read") from None

    def search(self, collection: str, region: Region, pattern: str, queries: np.ndarray,
               ef: int = 256) -> list[tuple[str, float] | None]:
        """The nearest label of `region` and `pattern` to each query and its cosine (None when
        the region holds none of that pattern): a central verification, or a check of one.
        `ef` 256: on random 256-d vectors, the worst case, 64 finds 96% of labels, 256 all
        (`tools/bench_milvus.py`); Milvus Lite's time a call hardly changes with it."""
        if not self._partition(collection, region, create=False):
            return [None] * len(queries)
        hits = self._call("search", self.client.search, collection, data=np.asarray(queries, np.float32).tolist(),
                          limit=1, filter=f"pattern == {_literal(pattern)}", partition_names=[region.partition],
                          output_fields=["label_id"], search_params={"metric_type": "IP", "params": {"ef": ef}})
        return [(found[0]["entity"]["label_id"], float(found[0]["distance"])) if found else None for found in hits]


@dataclass(frozen=True)
class StoreTarget:
    """Where an enrollment also writes its fingerprints: a store and the labels' region."""

    uri: str
    region: Region
