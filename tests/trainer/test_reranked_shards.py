"""Shards of kind ivf_pq_sq8 (`edge_app.shards.Reranked`): under a memory budget below IVF-SQ8,
`puf enroll` ships IVF-PQ codes that find a few candidates and, in a row file beside them, each
vector's SQ8 code that scores them. The bundle verifies its own labels and rejects others;
appending, unenrolling and the region export read the SQ8 rows, never the PQ codes; the row
file is signed like every shard file, and a device refuses one of the wrong length or dtype,
a missing one, and an index that names a row outside it; a kill -9 during enrollment leaves
the previous bundle whole."""

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.bundle_format import Manifest, ShardEntry
from edge_app.errors import PufError
from edge_app.folder_swap import versions_of
from edge_app.shards import Reranked, Shard, open_index, stored_vectors
from tests.bundle_support import enroll_crops, keys, model_bundle, sim_batch, write_crop_folder
from tests.faults import kill_moments, puf_command, run_and_kill, timed_run
from tests.trainer.test_approximate_scores import tree
from trainer.enroll import MAX_SCORE_RISE

ROTATIONS = 256  # 256 vectors a label: each of field 0's 12 labels has a pattern of its own
INDEX_BYTES = 200  # index bytes a vector: IVF-PQ32 + SQ8 rows (104 B at 256 vectors) fits, IVF-SQ8 (328 B) not
ID_BYTES = 16  # the least a label id is counted at (`trainer.enroll._shared_by`)


def puf(*argv, status: tuple[int, ...] = (0,)) -> dict:
    """`puf ARGV --json` as a subprocess: its JSON report (its exit status one of `status`)."""
    done = subprocess.run(puf_command(*map(str, argv), "--json"), capture_output=True, text=True, timeout=900)
    assert done.returncode in status, done.stderr[-3000:]
    return json.loads(done.stdout)


def memory_mb(bundle: Path, vectors: int) -> float:
    """A --memory-mb giving `vectors` INDEX_BYTES of index each (the model files besides)."""
    files = json.loads((bundle / "manifest.json").read_text())["files"]
    model_bytes = sum(e["bytes"] for name, e in files.items() if not name.startswith("shards/"))
    return round(((INDEX_BYTES + ID_BYTES) * vectors + model_bytes) / 1e6, 4)


def enroll_args(base: Path, bundle: Path, labels: Path, vectors: int) -> list:
    return ["enroll", "--bundle", bundle, "--labels", labels, "--key", keys(base)[0], "--rotations", ROTATIONS,
            "--exact-max", 10, "--memory-mb", memory_mb(bundle, vectors)]


@pytest.fixture(scope="module")
def reranked(base, tmp_path_factory) -> dict:
    """Field 0 enrolled under a budget that plans ivf_pq_sq8 (bundle "one"); field 1's crops."""
    root = tmp_path_factory.mktemp("reranked")
    bundle = Path(shutil.copytree(model_bundle(base), root / "one"))
    report = puf(*enroll_args(base, bundle, enroll_crops(base), 12 * ROTATIONS))
    return {"one": bundle, "report": report, "root": root,
            "field1": write_crop_folder(root / "field1", sim_batch(), (1,))}


def verdicts(bundle: Path, base: Path, folder: Path, photos: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """`puf verify` on handheld photos (field, slot) of the simulated batch: (verdict, label id)."""
    paths = []
    for field, slot in photos:
        paths.append(folder / f"f{field}s{slot}.png")
        cv2.imwrite(str(paths[-1]), sim_batch().handheld(field, slot, 11)[0])
    out = puf("verify", *paths, "--bundle", bundle, "--trusted-keys", keys(base)[1], status=(0, 1))  # 1: a fake
    return [(v["verdict"], v.get("label_id")) for v in out["verdicts"]]


def shard_rows(bundle: Path, entry: dict) -> np.ndarray:
    return np.load(bundle / entry["rows"]["file"], allow_pickle=False)


def test_a_tight_budget_ships_reranked_shards_that_verify_their_own_labels(base, reranked, tmp_path):
    bundle, report = reranked["one"], reranked["report"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    shards = manifest["shards"]
    assert shards["format"] == 2 and len(shards["classes"]) == 12
    for entry in shards["classes"].values():
        assert entry["kind"] == "ivf_pq_sq8" and entry["vectors"] == ROTATIONS
        assert entry["rows"]["file"] in manifest["files"] and entry["rows"]["candidates"] >= 1
        assert len(entry["rows"]["vmin"]) == len(entry["rows"]["vdiff"]) == manifest["embedding_dim"]
        assert shard_rows(bundle, entry).shape == (ROTATIONS, manifest["embedding_dim"])
        # the score error measured on the re-ranked scores, within the guard
        assert 0 < entry["score_error"]["max_up"] <= MAX_SCORE_RISE
    assert report["approximate_scores"] == {} and manifest["decision"].get("calibrated") is not False
    own = [(0, slot) for slot in range(4)]
    others = [(1, slot) for slot in range(4)]  # never enrolled: other labels of the same patterns
    found = verdicts(bundle, base, tmp_path, own + others)
    layout = sim_batch().layout
    assert found[:4] == [("genuine", layout.label_id(0, slot)) for slot in range(4)]
    assert all(verdict != "genuine" for verdict, _ in found[4:])


def test_appending_keeps_the_rows_and_unenrolling_rebuilds_from_them(base, reranked, tmp_path):
    one = Manifest.read(reranked["one"])
    bundle = Path(shutil.copytree(reranked["one"], tmp_path / "two", symlinks=True))
    report = puf(*enroll_args(base, bundle, reranked["field1"], 24 * ROTATIONS))
    appended = {p: e for p, e in report["shards"].items() if e["action"] == "appended"}
    assert appended and all(e["kind"] == "ivf_pq_sq8" for e in report["shards"].values())
    for pattern, entry in appended.items():
        before = shard_rows(reranked["one"], one.shards.entries[pattern].to_dict())
        after = shard_rows(bundle, entry)
        assert after.shape == (entry["vectors"], before.shape[1]) and np.array_equal(after[:len(before)], before)
    layout = sim_batch().layout
    found = verdicts(bundle, base, tmp_path, [(0, 1), (1, 2)])
    assert found == [("genuine", layout.label_id(0, 1)), ("genuine", layout.label_id(1, 2))]

    # unenroll a label of an appended shard: it is rebuilt from the SQ8 rows of the rest
    pattern = next(iter(appended))
    entry = Manifest.read(bundle).shards.entries[pattern]
    ids = np.char.decode(np.load(bundle / entry.ids), "ascii")
    label = ids[0]
    source = stored_vectors(open_index(bundle, entry, mmap=False))
    vdiff = np.array(entry.rows.vdiff, np.float32)
    puf("unenroll", "--label", label, "--bundle", bundle, "--key", keys(base)[0])
    rebuilt = Manifest.read(bundle).shards.entries[pattern]
    assert rebuilt.extra["kind"] == "ivf_pq_sq8" and rebuilt.vectors == ROTATIONS
    kept = stored_vectors(open_index(bundle, rebuilt, mmap=False))
    # re-encoded SQ8 rows: within a step of the old codes of each dimension (a PQ code is off by far more)
    assert np.abs(kept - source[ids != label]).max() <= 2 * float(vdiff.max()) / 255


def test_a_region_export_of_reranked_shards_reads_their_vectors(base, reranked, tmp_path):
    store = tmp_path / "fp.db"
    factory = Path(shutil.copytree(model_bundle(base), tmp_path / "factory"))
    puf(*enroll_args(base, factory, enroll_crops(base), 12 * ROTATIONS), "--milvus", store, "--region", "eu")
    out = tmp_path / "eu"
    report = puf("export-region", "--bundle", factory, "--milvus", store, "--region", "eu", "--out", out,
                 "--key", keys(base)[0], "--memory-mb", memory_mb(factory, 12 * ROTATIONS), "--exact-max", 10)
    assert report["labels"] == 12
    exported = load_bundle(out, keys(base)[1])
    enrolled = Manifest.read(factory)
    assert exported.manifest.shards.format == 2
    for pattern, entry in exported.manifest.shards.entries.items():
        assert entry.extra["kind"] == "ivf_pq_sq8"
        mine = stored_vectors(open_index(out, entry, mmap=False))
        theirs = stored_vectors(open_index(factory, enrolled.shards.entries[pattern], mmap=False))
        assert np.abs(np.sort(mine, axis=0) - np.sort(theirs, axis=0)).max() <= 0.02
    layout = sim_batch().layout
    assert verdicts(out, base, tmp_path, [(0, 5)]) == [("genuine", layout.label_id(0, 5))]


# ---- abuse ------------------------------------------------------------------------------

def first_shard(bundle: Path) -> tuple[str, ShardEntry]:
    return next(iter(Manifest.read(bundle).shards.entries.items()))


@pytest.mark.parametrize("doctor", ["short", "long", "uint16", "float32", "missing"])
def test_the_device_refuses_a_row_file_of_the_wrong_shape_dtype_or_none(base, reranked, tmp_path, doctor):
    bundle = Path(shutil.copytree(reranked["one"], tmp_path / "b", symlinks=True))
    pattern, entry = first_shard(bundle)
    path = bundle / entry.rows.file
    rows = np.load(path)
    if doctor == "short":
        np.save(path, rows[:-1])
    elif doctor == "long":
        path.write_bytes(path.read_bytes() + bytes(rows.shape[1]))  # a header that says fewer rows
    elif doctor == "missing":
        path.unlink()
    else:
        np.save(path, rows.astype(doctor))
    with pytest.raises(PufError, match="row file|rows|bytes, not the") as refused:
        Shard.load(bundle, pattern, entry)
    assert entry.rows.file.split("/")[-1] in str(refused.value)
    with pytest.raises(PufError, match="checksum|missing"):  # and the signed manifest refuses it first
        load_bundle(bundle, keys(base)[1])


def test_a_doctored_row_file_is_refused_by_the_signature_check(base, reranked, tmp_path):
    bundle = Path(shutil.copytree(reranked["one"], tmp_path / "b", symlinks=True))
    _, entry = first_shard(bundle)
    path = bundle / entry.rows.file
    rows = np.load(path)
    rows[:, :] = 255 - rows  # the same shape and dtype: only the checksum tells
    np.save(path, rows)
    with pytest.raises(PufError, match=f"{entry.rows.file} does not match its checksum"):
        load_bundle(bundle, keys(base)[1])


def test_an_index_naming_a_row_outside_the_row_file_is_refused(reranked):
    import faiss

    bundle = reranked["one"]
    _, entry = first_shard(bundle)
    good = open_index(bundle, entry, mmap=False)
    vectors = stored_vectors(good)
    ivf = faiss.index_factory(good.d, "IVF16,PQ32", faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64) + 5)  # ids past the last row
    doctored = Reranked(ivf, good.codes(), good.vmin, good.vdiff, good.candidates)
    faiss.extract_index_ivf(ivf).nprobe = 16
    with pytest.raises(PufError, match=f"outside its {len(vectors)} rows"):
        doctored.search(vectors[-3:], 1)


def test_the_manifest_refuses_malformed_row_entries(reranked):
    data = json.loads((reranked["one"] / "manifest.json").read_text())
    pattern = next(iter(data["shards"]["classes"]))

    def refused(change) -> str:
        doctored = json.loads(json.dumps(data))
        change(doctored, doctored["shards"]["classes"][pattern])
        with pytest.raises(PufError) as error:
            Manifest.from_dict(doctored).check_named_files()
        return str(error.value)

    assert "format 1 do not have" in refused(lambda m, e: m["shards"].update(format=1))
    assert "reads formats 1, 2" in refused(lambda m, e: m["shards"].update(format=3))
    assert "dimensions; the shards hold" in refused(lambda m, e: e["rows"].update(vmin=e["rows"]["vmin"][:-1],
                                                                               vdiff=e["rows"]["vdiff"][:-1]))
    assert '"vdiff" must be' in refused(lambda m, e: e["rows"]["vdiff"].__setitem__(0, -1.0))
    assert '"candidates" must be' in refused(lambda m, e: e["rows"].update(candidates=0))
    assert "not one of the bundle's signed files" in refused(lambda m, e: e["rows"].update(file="../rows.npy"))
    assert "not one of the bundle's signed files" in refused(lambda m, e: e["rows"].update(file="shards/x.npy"))


def test_a_kill_during_enrollment_leaves_the_previous_reranked_bundle_whole(base, reranked, tmp_path):
    """kill -9 an append into a re-ranked bundle at seeded moments: each time, the bundle is the
    previous version, whole and signed, or the new one; never a row file without its index."""
    bundle = Path(shutil.copytree(reranked["one"], tmp_path / "site" / "bundle", symlinks=True))
    before = tree(bundle.resolve())
    log = tmp_path / "enroll.log"
    command = puf_command(*map(str, enroll_args(base, bundle, reranked["field1"], 24 * ROTATIONS)))
    scratch = Path(shutil.copytree(reranked["one"], tmp_path / "scratch" / "bundle", symlinks=True))
    longest = timed_run(puf_command(*map(str, enroll_args(base, scratch, reranked["field1"], 24 * ROTATIONS))), log)
    killed = 0
    for moment in kill_moments(7, 4, longest):
        code = run_and_kill(command, moment, log)
        loaded = load_bundle(bundle, keys(base)[1])  # whatever is left verifies
        if code is None:
            killed += 1
            if loaded.manifest.shards.vectors == 12 * ROTATIONS:
                assert tree(bundle.resolve()) == before
        else:
            assert code == 0
            break
    assert killed
    timed_run(command, log)  # the run after the kills ends the work, and clears what they left
    assert load_bundle(bundle, keys(base)[1]).manifest.shards.vectors == 24 * ROTATIONS
    hidden = {p.name for p in bundle.parent.iterdir() if p.name.startswith(".")}
    assert hidden <= {".bundle.lock", versions_of(bundle).name}


def test_evaluation_reads_a_reranked_shards_vectors_from_its_rows(base, reranked):
    """`puf evaluate` scores every enrolled vector exactly: from the SQ8 rows, as the device opened them."""
    from trainer.evaluation import shard_vectors

    bundle = load_bundle(reranked["one"], keys(base)[1])
    for pattern, (vectors, ids) in shard_vectors(bundle).items():
        shard = bundle.shards.shards[pattern]
        assert isinstance(shard.index, Reranked) and len(ids) == ROTATIONS
        assert np.array_equal(vectors, shard.index.decode(np.load(reranked["one"] / shard.entry.rows.file)))
