"""Fingerprints in a real Milvus Lite store and on a real Milvus server: enrollment of two regions writes there
idempotently, a region's bundle exported from it verifies that region's labels as genuine
and the other region's as counterfeit, and the store refuses what would abuse it."""

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.bundle_format import Manifest
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, keys, model_bundle, sim_batch
from tests.store_support import export, main
from trainer import region_export
from trainer.enroll import enroll
from trainer.fingerprint_store import READ_ROWS, FingerprintStore, Region, StoreTarget, collection_name

EU, US = Region("tea", "eu"), Region("tea", "us")


def stored(store_path: Path | str, bundle: Path, region: Region) -> tuple[int, int]:
    """Rows and distinct labels of `region` in the store, for the bundle's model."""
    manifest = Manifest.read(bundle)
    name = collection_name(manifest, "int8")
    with FingerprintStore(str(store_path)) as store:
        store.open_collection(name, int(manifest.embedding_dim or 0), create=False)
        ids = [label_id for page in store.pages(name, region) for label_id in page.label_ids]
    return len(ids), len(set(ids))


def verdict(base, bundle: Path, tmp_path: Path, field: int, slot: int, capsys) -> dict:
    image, _ = sim_batch().handheld(field, slot, 3)
    photo = tmp_path / f"f{field}s{slot}.png"
    cv2.imwrite(str(photo), image)
    capsys.readouterr()
    main(["verify", str(photo), "--bundle", str(bundle), "--trusted-keys", str(keys(base)[1]), "--json"])
    [found] = json.loads(capsys.readouterr().out)["verdicts"]
    return found


def test_enrollment_writes_each_region_once_and_a_rerun_adds_nothing(base, central, capsys):
    bundle, store, us_crops = central
    assert stored(store, bundle, EU) == (12, 12) and stored(store, bundle, US) == (12, 12)
    capsys.readouterr()
    assert main(["enroll", "--bundle", str(bundle), "--labels", str(us_crops), "--key", str(keys(base)[0]),
                 "--milvus", str(store), "--product", "tea", "--region", "us", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels_added"] == 0 and report["store"]["caught_up"] == 0
    assert stored(store, bundle, US) == (12, 12)


def test_a_region_bundle_verifies_its_labels_and_refuses_the_other_regions(base, central, tmp_path, capsys):
    out = tmp_path / "eu_bundle"
    assert export(base, central, "eu", out) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == 12 and report["region"] == "tea/eu" and report["signed_by"]
    manifest = json.loads((out / "manifest.json").read_text())
    ids = {i for e in manifest["shards"]["classes"].values() for i in np.load(out / e["ids"]).astype(str)}
    assert ids == {sim_batch().layout.label_id(0, s) for s in range(12)}
    assert manifest["shards"]["region"] == {"product": "tea", "region": "eu"}
    genuine = verdict(base, out, tmp_path, 0, 5, capsys)
    assert genuine["verdict"] == "genuine" and genuine["label_id"] == sim_batch().layout.label_id(0, 5)
    slot = next(s for s in range(12) if sim_batch().layout.pattern_of(1, s) in manifest["shards"]["classes"])
    assert verdict(base, out, tmp_path, 1, slot, capsys)["verdict"] == "counterfeit"  # a tea/us label
    assert verdict(base, central[0], tmp_path, 1, slot, capsys)["verdict"] == "genuine"  # in the factory's bundle


def test_a_new_export_counts_up_from_the_bundle_it_replaces(base, central, tmp_path, capsys):
    out = tmp_path / "us_bundle"
    assert export(base, central, "us", out) == 0
    first = json.loads(capsys.readouterr().out)["sequence"]
    assert export(base, central, "us", out) == 0
    assert json.loads(capsys.readouterr().out)["sequence"] == first + 1
    assert not list(tmp_path.glob(".us_bundle.*new*"))


def test_enrolling_with_a_store_catches_up_labels_the_bundle_already_held(base, tmp_path, key, store_uri):
    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "b"))
    store = store_uri
    enroll(bundle, enroll_crops(base), key, progress=False)  # without the store
    report = enroll(bundle, enroll_crops(base), key, progress=False, store=StoreTarget(str(store), EU))
    assert report.labels_added == 0 and report.store["caught_up"] == 12
    assert stored(store, bundle, EU) == (12, 12)


def test_export_of_a_region_the_store_lacks_is_refused(base, central, tmp_path, capsys):
    assert export(base, central, "asia", tmp_path / "asia") == 2
    assert "holds no fingerprint of tea/asia" in capsys.readouterr().err
    assert not (tmp_path / "asia").exists()


@pytest.mark.parametrize("argv, message", [
    (["--milvus", "fp.sqlite", "--region", "eu"], "neither a Milvus server URI"),
    (["--milvus", "STORE", "--region", "e u"], "region id 'e u' is not allowed: a region id is 1-40 letters or digits"),
    (["--milvus", "STORE", "--region", "eu", "--product", "x_y"], "product id 'x_y' is not allowed"),
    (["--milvus", "STORE"], "--milvus needs --region"),
    (["--region", "eu"], "give --milvus too"),
    (["--milvus", "http://127.0.0.1:9", "--region", "eu"], "cannot open the fingerprint store"),
])
def test_puf_enroll_refuses_a_bad_store_or_region_before_touching_the_bundle(base, fresh, tmp_path, capsys, argv,
                                                                                message):
    argv = [str(tmp_path / "fp.db") if a == "STORE" else a for a in argv]
    before = (fresh / "manifest.json").read_bytes()
    assert main(["enroll", "--bundle", str(fresh), "--labels", str(enroll_crops(base)), *argv]) == 2
    assert message in capsys.readouterr().err
    assert (fresh / "manifest.json").read_bytes() == before


def test_patterns_cannot_change_what_a_filter_selects(store_uri):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    labels = ["a", "b", "c"]
    with FingerprintStore(store_uri) as store:
        store.open_collection("fp_test", 8, create=True)
        assert store.upsert("fp_test", EU, labels, ["P1", 'P" or pattern != "', "P1"], vectors) == 3
        assert store.label_ids("fp_test", EU, ["a", "nobody"]) == {"a"}
        assert store.count("fp_test", EU, 'P" or pattern != "') == 1
        assert store.count("fp_test", EU, "P1") == 2 and store.count("fp_test", US) == 0
        pages = list(store.pages("fp_test", EU))
        assert sorted(pair for page in pages for pair in zip(page.label_ids, page.patterns, strict=True)) \
            == [("a", "P1"), ("b", 'P" or pattern != "'), ("c", "P1")]
        [(label, score)] = store.search("fp_test", EU, "P1", vectors[2:3] / np.linalg.norm(vectors[2]))
        assert label == "c" and score == pytest.approx(np.linalg.norm(vectors[2]), rel=1e-4)
        with pytest.raises(PufError, match="1-64 characters"):
            store.upsert("fp_test", EU, ["x"], ["P" * 65], vectors[:1])
        with pytest.raises(PufError, match="holds 8-d fingerprints, the model gives 16-d"):
            store.open_collection("fp_test", 16, create=False)


@pytest.mark.parametrize("label_id", ['a"b', "a\\b", 'a\\"b', "../x", "a b", "a\x01b", "", "x" * 65])
def test_the_store_takes_no_label_id_outside_the_grammar(store_uri, label_id):
    vectors = np.eye(2, 8, dtype=np.float32)
    with FingerprintStore(store_uri) as store:
        store.open_collection("fp_test", 8, create=True)
        with pytest.raises(PufError, match="label id .* is not allowed: a label id is 1-64 letters"):
            store.upsert("fp_test", EU, ["A0", label_id], ["P1", "P1"], vectors)
        with pytest.raises(PufError, match="label id .* is not allowed"):
            store.label_ids("fp_test", EU, [label_id])
        assert store.count("fp_test", EU) == 0  # nothing written


@pytest.mark.parametrize("region, label_id", [("legacyquote", 'a"b'), ("legacyloop", 'a\\"b')])
def test_export_region_of_a_store_written_before_the_grammar_stops_naming_the_id(base, central, tmp_path, capsys,
                                                                               region, label_id):
    """Rows a store took before ids were checked (written here past the check, as old code
    wrote them): pymilvus pages past the last of them with a literal it does not escape, which
    failed every export ('"') or looped it forever ('\\"'). The export ends, naming the id."""
    bundle, store_path, _ = central
    manifest = Manifest.read(bundle)
    name, legacy = collection_name(manifest, "int8"), Region("tea", region)
    vectors = np.eye(3, int(manifest.embedding_dim or 0), dtype=np.float32)
    pattern = (manifest.pattern_classes or [])[0]
    with FingerprintStore(str(store_path)) as store:
        store.open_collection(name, vectors.shape[1], create=False)
        store.upsert(name, legacy, ["A0", "A1"], [pattern] * 2, vectors[:2])
        store.client.upsert(name, [{"key": f"{legacy}/{label_id}/0", "label_id": label_id, "pattern": pattern,
                                    "copy": 0, "vector": vectors[2]}], partition_name=legacy.partition)
    capsys.readouterr()
    assert export(base, central, region, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert f"holds a fingerprint of tea/{region} whose label id {label_id!r} is not allowed" in error, error
    assert "1-64 letters" in error and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".export-*"))  # the split of the store's rows is gone too


def test_an_export_reads_the_region_once_showing_progress_and_keeps_no_split(base, central, tmp_path, capsys):
    """The store's rows come in one scan, split by pattern into files beside the bundle
    (`trainer.pattern_spill`): progress on stderr, and the files gone once it is written."""
    assert export(base, central, "us", tmp_path / "us") == 0
    shown = capsys.readouterr().err
    assert "reading tea/us" in shown and "| 12/" in shown, shown  # 12 labels read
    assert not list(tmp_path.glob(".export-*"))


def test_pages_hold_every_row_of_the_region_once_as_the_store_holds_it(store_uri):
    """The export's read (`FingerprintStore.pages`: its own paging by key, the reply's columns
    decoded into numpy) gives exactly the rows pymilvus's own query returns for the region,
    vectors bit for bit, over many pages and a short last one, and nothing of another region."""
    rng = np.random.default_rng(3)
    labels = [f"L{i:03d}" for i in range(25)]
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    with FingerprintStore(store_uri) as store:
        store.open_collection("fp_test", 8, create=True)
        store.upsert("fp_test", EU, labels, [f"P{i % 3}" for i in range(25)], vectors, copies=2)
        store.upsert("fp_test", US, ["U1"], ["P0"], vectors[:1])
        pages = list(store.pages("fp_test", EU, rows=7))
        held = store.client.query("fp_test", filter='key != ""', partition_names=[EU.partition], output_fields=["*"])
    expected = {row["key"]: row for row in held}
    assert len(pages) >= 8 and all(0 < len(page) <= 7 for page in pages)
    keys = [key for page in pages for key in page.keys]
    assert keys == sorted(expected) and len(keys) == 50  # each row once, in key order
    for page in pages:
        assert page.vectors.dtype == np.float32 and page.vectors.shape == (len(page), 8)
        for i, key in enumerate(page.keys):
            row = expected[key]
            assert (page.label_ids[i], page.patterns[i], int(page.copies[i])) == (row["label_id"], row["pattern"],
                                                                                   row["copy"])
            assert page.vectors[i].tobytes() == np.asarray(row["vector"], np.float32).tobytes()
    assert {page.vectors[i].tobytes() for page in pages for i in range(len(page))} == {v.tobytes() for v in vectors}


def test_an_export_from_milvus_lite_warns_of_its_expected_time_and_goes_on(base, central, tmp_path, capsys,
                                                                          store_engine, monkeypatch):
    """Milvus Lite answers each page with a pass over the whole region, so its read grows with
    the square of the region's size (`FingerprintStore.read_seconds`): an export expected to
    read longer than LITE_WARN_SECONDS (0 here) says so on stderr with the time, and is
    written all the same; a server's export gives no such warning."""
    bundle, store_path, _ = central
    with FingerprintStore(str(store_path)) as store:
        lite = store.lite
        one, two = store.read_seconds(READ_ROWS * 10), store.read_seconds(READ_ROWS * 20)
    assert lite == (store_engine == "milvus_lite")
    assert (two > 3 * one > 0) if lite else one == two == 0  # twice the rows, twice the pages
    monkeypatch.setattr(region_export, "LITE_WARN_SECONDS", 0.0)
    assert export(base, central, "us", tmp_path / "us") == 0
    shown = capsys.readouterr().err
    assert bool(re.search(r"warning: Milvus Lite reads the \d+ fingerprints of tea/us in about \d+ minutes", shown)) \
        == lite, shown
    assert Manifest.read(tmp_path / "us").shards is not None
