"""`puf unenroll` and `puf revoke` rebuild the shards that held the labels they take out; a
rebuilt shard is smaller, pays more a vector for its IVF centroids, and can get coarser codes
from the same memory budget. Such a shard is refused as `puf enroll` refuses one (its scores
rising above exact search by more than MAX_SCORE_RISE would let counterfeits over the
threshold), unless the run is told to accept it; a refused run leaves the bundle as it was."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.bundle_format import Manifest
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, keys, model_bundle, sim_batch, write_crop_folder
from tests.trainer.test_approximate_scores import puf_json, tree
from trainer import index_build
from trainer.enroll import MAX_SCORE_RISE

ROTATIONS = 200  # two labels a pattern (fields 0 and 1): shards of 400 vectors, 200 once one label is out
LABEL = sim_batch().layout.label_id(0, 3)  # shares its pattern with a label of field 1
KEPT_BUDGET = 236  # index bytes a vector once LABEL is out: IVF16,SQ4 for its 200-vector shard (218 B), not SQ8
ID_BYTES = 16  # the least a label id is counted at (`trainer.enroll._shared_by`)


def puf_run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "puf"), *map(str, argv)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def approximate(base, tmp_path_factory) -> Path:
    """Fields 0 and 1 enrolled at a budget that gives every 400-vector shard IVF-PQ codes
    re-ranked from SQ8 rows (within the score guard) and every 200-vector one, too small to
    train PQ codes, IVF-SQ4 (accepted: the bundle says its threshold is not calibrated). The removals rebuild at the
    bundle's budget less its model files, templates included (added by this enrollment)."""
    root = tmp_path_factory.mktemp("removal_guard")
    bundle = Path(shutil.copytree(model_bundle(base), root / "bundle"))
    crops = write_crop_folder(root / "crops", sim_batch(), (0, 1))
    scratch = Path(shutil.copytree(model_bundle(base), root / "scratch"))  # to learn the templates' size
    puf_json("enroll", "--bundle", str(scratch), "--labels", str(enroll_crops(base)), "--key", str(keys(base)[0]))
    manifest = json.loads((scratch / "manifest.json").read_text())
    model_bytes = sum(e["bytes"] for name, e in manifest["files"].items() if not name.startswith("shards/"))
    kept_vectors = 23 * ROTATIONS
    memory_mb = round(((KEPT_BUDGET + ID_BYTES) * kept_vectors + model_bytes) / 1e6, 4)
    report = puf_json("enroll", "--bundle", str(bundle), "--labels", str(crops), "--key", str(keys(base)[0]),
                      "--rotations", str(ROTATIONS), "--memory-mb", str(memory_mb), "--exact-max", "10",
                      "--accept-approximate-scores")
    kinds = {pattern: e["kind"] for pattern, e in report["shards"].items()}
    assert report["labels_added"] == 24 and set(kinds.values()) == {"ivf_pq_sq8", "ivf_sq4"}  # 2 labels or 1
    assert kinds[pattern_of_label(bundle)] == "ivf_pq_sq8"
    return bundle


def pattern_of_label(bundle: Path) -> str:
    return next(p for p, e in json.loads((bundle / "manifest.json").read_text())["shards"]["classes"].items()
                if LABEL.encode() in (bundle / e["ids"]).read_bytes())


@pytest.mark.parametrize("verb", ["unenroll", "revoke"])
def test_a_removal_whose_rebuilt_shard_raises_scores_is_refused_and_changes_nothing(base, approximate, tmp_path,
                                                                                    verb):
    bundle = Path(shutil.copytree(approximate, tmp_path / "bundle"))
    before, pattern = tree(bundle), pattern_of_label(bundle)
    args = (["unenroll", "--label", LABEL] if verb == "unenroll" else ["revoke", LABEL, "--reason", "stolen"])
    args += ["--bundle", bundle, "--key", keys(base)[0]]
    done = puf_run(*args)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"puf {verb}: error: shard {pattern!r} (ivf_sq4 index) raises scores "
                            "above exact search by up to"), error
    assert float(re.search(r"by up to ([0-9.]+)", error).group(1)) > MAX_SCORE_RISE
    assert "--accept-approximate-scores" in error
    assert tree(bundle) == before  # nothing written, nothing left behind
    # the budget the refusal names is enough: the rebuilt shard then gets 8-bit codes
    enough = re.search(r"raise --memory-mb to (\d+)", error).group(1)
    report = puf_json(*map(str, args), "--memory-mb", enough)
    manifest = json.loads((bundle / "manifest.json").read_text())
    rebuilt = manifest["shards"]["classes"][pattern]
    assert rebuilt["kind"] == "sq8" and rebuilt["score_error"]["max_up"] <= MAX_SCORE_RISE
    assert rebuilt["labels"] == 1 and manifest["shards"]["labels"] == 23
    assert report["sequence"] == Manifest.read(approximate).release.sequence + 1


@pytest.mark.parametrize("verb", ["unenroll", "revoke"])
def test_an_accepted_removal_records_the_rebuilt_shards_score_error(base, approximate, tmp_path, verb):
    bundle = Path(shutil.copytree(approximate, tmp_path / "bundle"))
    pattern = pattern_of_label(bundle)
    args = (["unenroll", "--label", LABEL] if verb == "unenroll" else ["revoke", LABEL, "--reason", "stolen"])
    puf_json(*map(str, args), "--bundle", str(bundle), "--key", str(keys(base)[0]), "--accept-approximate-scores")
    manifest = json.loads((bundle / "manifest.json").read_text())
    rebuilt = manifest["shards"]["classes"][pattern]
    assert rebuilt["kind"] == "ivf_sq4" and rebuilt["labels"] == 1
    assert rebuilt["score_error"]["max_up"] > MAX_SCORE_RISE
    assert manifest["decision"]["calibrated"] is False
    assert manifest["decision"]["approximate_scores"] == {pattern: rebuilt["score_error"]}
    assert "--accept-approximate-scores" in manifest["decision"]["not_calibrated_because"]


def test_no_pq_code_is_planned_for_fewer_vectors_than_its_codebooks_train_on():
    """A shard left with fewer than 256 vectors (a removal's rebuild) got an IVF-PQ plan that
    Faiss could not train (an internal error); now no such plan, and the budget is refused."""
    with pytest.raises(PufError, match="no index fits"):
        index_build.plan_index(200, 256, 150, exact_max=10)
    vectors = np.random.default_rng(0).standard_normal((index_build.PQ_TRAIN_MIN, 256)).astype(np.float32)
    for budget, kind in ((150, "ivf_pq_sq8"), (80, "ivf_pq")):
        plan = index_build.plan_index(index_build.PQ_TRAIN_MIN, 256, budget, exact_max=10)
        assert plan.kind == kind
        assert index_build.build_index(vectors, plan).ntotal == index_build.PQ_TRAIN_MIN
