"""A shard whose index rounds scores up (IVF-SQ4, IVF-PQ under a tight memory budget) would
let counterfeits over a threshold calibrated on exact scores: `puf enroll` measures each
shard's score error (`trainer.index_build.score_error`) and refuses such a shard unless told
to accept it, which marks the threshold not calibrated."""

import contextlib
import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.cli import main
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, keys, sim_batch, write_crop_folder
from trainer import index_build
from trainer.enroll import MAX_SCORE_RISE, EnrollOptions, EnrollReport, enroll
from trainer.evaluation import evaluate
from trainer.fingerprint_store import Region, StoreTarget
from trainer.region_export import export_region

ROTATIONS = 36  # 36 vectors a shard: each of the 12 labels has its own pattern
EXACT_MAX = 10  # so every shard is an IVF


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` (relative name -> sha256 of its bytes)."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def sq4_budget_mb(bundle: Path) -> float:
    """A --memory-mb that gives each 36-vector shard of a 256-d model IVF16,SQ4 codes: its
    vectors' share of the 16 centroids (4 x 256 x 16 / 36 = 455 B) plus 136 B of codes and ids
    fits (591 B), IVF-SQ8's 264 B does not (719 B); 16 B of label id a vector besides."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["embedding_dim"] == 256
    model_bytes = sum(e["bytes"] for name, e in manifest["files"].items() if not name.startswith("shards/"))
    return round(((650 + 16) * 12 * ROTATIONS + model_bytes) / 1e6, 4)


def enroll_args(base: Path, bundle: Path, memory_mb: float, *more) -> list[str]:
    return ["enroll", "--bundle", str(bundle), "--labels", str(enroll_crops(base)), "--key", str(keys(base)[0]),
            "--rotations", str(ROTATIONS), "--exact-max", str(EXACT_MAX), "--memory-mb", str(memory_mb), *more]


def puf_json(*argv: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main([*argv, "--json"]) == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_a_tight_budget_is_refused_and_the_bundle_left_as_it_was(base, fresh):
    before = tree(fresh)
    done = subprocess.run([str(Path(sys.executable).parent / "puf"), *enroll_args(base, fresh, sq4_budget_mb(fresh))],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("puf enroll: error: shard ")
    assert "(ivf_sq4 index) raises scores above exact search by up to" in error
    measured = float(re.search(r"by up to ([0-9.]+)", error).group(1))
    assert measured > MAX_SCORE_RISE
    assert "--accept-approximate-scores" in error and "puf evaluate --query-far" in error
    assert tree(fresh) == before  # nothing written, nothing left behind
    # the budget the refusal names is enough: every shard then gets 8-bit codes, within tolerance
    enough = int(re.search(r"raise --memory-mb to (\d+)", error).group(1))
    report = puf_json(*enroll_args(base, fresh, enough))
    assert report["labels_added"] == 12 and len(report["shards"]) == 12
    assert {e["kind"] for e in report["shards"].values()} == {"ivf_sq8"}
    assert all(e["score_error"]["max_up"] <= MAX_SCORE_RISE for e in report["shards"].values())
    assert not report["approximate_scores"]
    assert load_bundle(fresh, keys(base)[1]).uncalibrated_warning is None


def test_accepted_approximate_scores_are_reported_and_the_threshold_marked_not_calibrated(base, fresh, key,
                                                                                          tmp_path):
    report = puf_json(*enroll_args(base, fresh, sq4_budget_mb(fresh), "--accept-approximate-scores"))
    assert report["labels_added"] == 12
    rising = {p for p, e in report["shards"].items() if e["score_error"]["max_up"] > MAX_SCORE_RISE}
    assert rising and set(report["approximate_scores"]) == rising
    assert all(report["shards"][p]["kind"] == "ivf_sq4" for p in rising)
    text = EnrollReport(**report).describe()  # the table puf enroll prints without --json
    assert "score+" in text and f"NOT CALIBRATED: {len(rising)} shard(s) raise scores" in text
    manifest = json.loads((fresh / "manifest.json").read_text())
    for pattern in rising:  # the manifest's shard entry carries the same figures
        assert manifest["shards"]["classes"][pattern]["score_error"] == report["shards"][pattern]["score_error"]
    assert manifest["decision"]["calibrated"] is False
    assert set(manifest["decision"]["approximate_scores"]) == rising
    bundle = load_bundle(fresh, keys(base)[1])  # signed, installable, and it says why not to trust its threshold
    assert "not calibrated" in bundle.uncalibrated_warning
    assert "puf evaluate --query-far" in bundle.uncalibrated_warning
    # the way out the message names: a threshold calibrated on this index's own scores
    queries = write_crop_folder(tmp_path / "queries", sim_batch(), (0, 1), shots=0, handheld=1)
    evaluate(fresh, [queries], query_far_target=0.05, classify=False, private_key=key, progress=False,
             frr_bound=0.25)
    assert load_bundle(fresh, keys(base)[1]).uncalibrated_warning is None


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, d))[rng.integers(0, 64, n)] + 1.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("budget", "kind"), [(1e6, "flat"), (45.0, "ivf_pq")])  # 45 B: below IVF-PQ32 + SQ8 rows
def test_the_score_error_is_nil_for_exact_search_and_above_tolerance_for_pq(budget, kind):
    vectors = clustered(3000, 128, 2)
    plan = index_build.plan_index(len(vectors), 128, budget, exact_max=1000 if kind == "ivf_pq" else 5000)
    assert plan.kind == kind
    index = index_build.build_index(vectors, plan)
    error = index_build.tune(index, vectors, target_recall=0.99, genuine_cosine=0.6)["score_error"]
    assert error["queries"] == 1000
    if kind == "flat":
        assert error["max_abs"] <= 1e-6 and error["max_up"] <= 1e-6
    else:
        assert error["max_up"] > MAX_SCORE_RISE and error["max_abs"] >= error["p99_abs"] > MAX_SCORE_RISE
    # the measure itself, checked by hand on the same queries
    queries, _ = index_build.genuine_like(vectors, 200, 0.6, np.random.default_rng(7))
    scores, rows = index.search(queries, 1)
    exact = (queries * vectors[rows[:, 0]]).sum(axis=1)
    assert index_build.score_error(index, vectors, queries)["max_abs"] == pytest.approx(
        float(np.abs(scores[:, 0] - exact).max()), abs=1e-6)




def test_a_region_export_under_a_tight_budget_is_refused_unless_accepted(base, fresh, key, tmp_path):
    """A region's bundle from the fingerprint store gets its shards as enrollment does, and
    is refused the same way."""
    store, eu = str(tmp_path / "fp.db"), Region("tea", "eu")
    enroll(fresh, enroll_crops(base), key, EnrollOptions(rotations=ROTATIONS), progress=False,
           store=StoreTarget(store, eu))  # the factory's bundle: exact shards
    out = tmp_path / "eu"
    tight = EnrollOptions(memory_budget_mb=sq4_budget_mb(fresh), exact_max=EXACT_MAX)
    with pytest.raises(PufError, match=r"\(ivf_sq4 index\) raises scores above exact search"):
        export_region(store, fresh, out, eu, key, tight, progress=False)
    assert not out.exists()
    accepted = dataclasses.replace(tight, accept_approximate_scores=True)
    report = export_region(store, fresh, out, eu, key, accepted, progress=False)
    assert report["labels"] == 12 and report["approximate_scores"]
    exported = load_bundle(out, keys(base)[1])
    assert exported.decision.calibrated is False and "puf evaluate --query-far" in exported.uncalibrated_warning
