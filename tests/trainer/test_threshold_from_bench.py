"""tools/threshold_from_bench.py: a bench run sets the shipped bundle's threshold, and only a run
of that very model whose second half confirms it."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("threshold_from_bench", ROOT / "tools" / "threshold_from_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(bundle: Path, tmp_path: Path, second_half_mean: float = 0.5, stand_ins: int | None = 0,
           exact_above: float | None = 0.0, **model) -> Path:
    """A bench result; its exact search scores each counterfeit `exact_above` higher than its
    index did (None: a run without exact scores)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    rng = np.random.default_rng(6)
    counterfeit = np.concatenate([rng.normal(0.5, 0.05, 20_000), rng.normal(second_half_mean, 0.05, 20_000)])
    result = {"model": {"name": manifest["model"]["name"], "version": manifest["model"]["version"]} | model,
              "database": {"vectors": 4_155_600, "labels": 41_556, "real_labels": 41_556 - (stand_ins or 0),
                           "stand_in_labels": stand_ins, "shards": 44}, "plan": {"augmented": 100},
              "scores": {"genuine": rng.normal(0.95, 0.01, 4_000).tolist(), "counterfeit": counterfeit.tolist()}}
    if exact_above is not None:
        result["exact_scores"] = {"genuine": result["scores"]["genuine"],
                                  "counterfeit": (counterfeit + exact_above).tolist()}
    if stand_ins is None:  # a run made before the bench counted its stand-ins
        del result["database"]["stand_in_labels"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(result))
    return path


@pytest.fixture
def bundle(tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(ROOT / "models" / "default", copy)
    return copy


def test_a_confirmed_bench_threshold_is_written_with_its_check(tool, bundle, tmp_path):
    assert tool.main([str(_bench(bundle, tmp_path)), "--bundle", str(bundle)]) == 0
    decision = json.loads((bundle / "manifest.json").read_text())["decision"]
    assert 0.5 + 4 * 0.05 < decision["threshold"] < 0.95 and decision["calibrated"] is True
    assert decision["query_far"] == 1e-5 and decision["labels_per_shard"] == 944
    assert decision["vectors_per_shard"] == round(4_155_600 / 44)  # a label's copies meet a counterfeit too
    assert decision["checked_on"]["counterfeit_accepted"] == 0 and decision["checked_on"]["genuine_accepted"] == 2_000
    # the second half is drawn like the first: its estimate lies near the goal, on either side
    assert 1e-6 < decision["checked_on"]["estimated"] <= 3e-5 and "0-19,999" in decision["calibrated_on"]
    assert "41,556 distinct labels" in decision["calibrated_on"]


@pytest.mark.parametrize("stand_ins", [35_556, None])
def test_a_run_with_stand_in_labels_never_calibrates(tool, bundle, tmp_path, capsys, stand_ins):
    """Stand-ins no query can come near would calibrate for a database 7 times smaller than stated."""
    before = (bundle / "manifest.json").read_bytes()
    assert tool.main([str(_bench(bundle, tmp_path, stand_ins=stand_ins)), "--bundle", str(bundle)]) == 2
    assert "stand-in labels" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_bytes() == before


def test_a_run_of_another_model_or_an_unconfirmed_threshold_is_refused(tool, bundle, tmp_path, capsys):
    before = (bundle / "manifest.json").read_bytes()
    assert tool.main([str(_bench(bundle, tmp_path, version="another")), "--bundle", str(bundle)]) == 2
    assert "not this bundle's model" in capsys.readouterr().err
    # the photos after the first half score higher than the first half's tail allows
    assert tool.main([str(_bench(bundle, tmp_path, second_half_mean=0.6)), "--bundle", str(bundle)]) == 2
    assert "do not confirm" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_bytes() == before


def test_the_threshold_holds_for_every_index_calibrated_on_exact_scores(tool, bundle, tmp_path, capsys):
    """An index that misses counterfeits' nearest labels scores them lower than exact search: a
    threshold set on its scores would let through what another kind of index (or exact search)
    scores higher. By default the tool calibrates on exact scores; on the index's only when asked."""
    bench = _bench(bundle, tmp_path, exact_above=0.03)
    assert tool.main([str(bench), "--bundle", str(bundle)]) == 0
    decision = json.loads((bundle / "manifest.json").read_text())["decision"]
    assert "exact search" in decision["tail"]["scores"] and "exact best scores" in decision["calibrated_on"]
    assert tool.main([str(bench), "--bundle", str(bundle), "--scores", "device"]) == 0
    by_index = json.loads((bundle / "manifest.json").read_text())["decision"]
    assert by_index["threshold"] < decision["threshold"] - 0.02  # the index's own scores sat 0.03 lower
    assert "the run's own shard index" in by_index["tail"]["scores"]
    capsys.readouterr()


def test_a_run_without_exact_scores_is_refused_unless_its_index_is_asked_for(tool, bundle, tmp_path, capsys):
    before = (bundle / "manifest.json").read_bytes()
    bench = _bench(bundle, tmp_path, exact_above=None)
    assert tool.main([str(bench), "--bundle", str(bundle)]) == 2
    assert "holds no exact scores" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_bytes() == before
    assert tool.main([str(bench), "--bundle", str(bundle), "--scores", "device"]) == 0


def _sized(bench: Path, labels: int, counterfeit_shift: float = 0.0) -> Path:
    """The bench result at `bench`, as if run at `labels` distinct labels a shard of one vector
    each, its counterfeit scores shifted."""
    result = json.loads(bench.read_text())
    result["database"] |= {"real_labels": labels * 4, "labels": labels * 4, "vectors": labels * 4, "shards": 4}
    result["plan"] = {"augmented": 1, "patterns": 4}
    for scores in (result["scores"], result["exact_scores"]):
        scores["counterfeit"] = [s + counterfeit_shift for s in scores["counterfeit"]]
    path = bench.with_name(f"bench_{labels}.json")
    path.write_text(json.dumps(result))
    return path


def test_confirm_adds_a_size_the_threshold_holds_at_and_refuses_one_it_does_not(tool, bundle, tmp_path, capsys):
    assert tool.main([str(_bench(bundle, tmp_path)), "--bundle", str(bundle)]) == 0
    calibrated = json.loads((bundle / "manifest.json").read_text())["decision"]
    bench = tmp_path / "bench.json"
    # another run whose counterfeits score lower still: the threshold holds there, and the size is kept with its check
    assert tool.main([str(_sized(bench, 22_727, -0.05)), "--bundle", str(bundle), "--confirm"]) == 0
    decision = json.loads((bundle / "manifest.json").read_text())["decision"]
    assert decision["threshold"] == calibrated["threshold"] and decision["labels_per_shard"] == 944
    [size] = decision["checked_sizes"]
    assert (size["labels"], size["vectors"], size["counterfeit_accepted"]) == (22_727, 22_727, 0)
    assert size["estimated"] <= 3e-5 and size["scores"] == "exact" and "of the first 4 pattern classes" in size["run"]
    # confirming the same size again replaces its record instead of adding a second
    assert tool.main([str(_sized(bench, 22_727, -0.05)), "--bundle", str(bundle), "--confirm"]) == 0
    assert len(json.loads((bundle / "manifest.json").read_text())["decision"]["checked_sizes"]) == 1
    # a run whose counterfeits clear it: refused, nothing changes
    before = (bundle / "manifest.json").read_bytes()
    assert tool.main([str(_sized(bench, 50_000, 0.2)), "--bundle", str(bundle), "--confirm"]) == 2
    assert "does not hold at 50,000 labels" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_bytes() == before
    # a new calibration sets a new threshold: the sizes checked for the old one go
    assert tool.main([str(bench), "--bundle", str(bundle), "--scores", "device"]) == 0
    assert "checked_sizes" not in json.loads((bundle / "manifest.json").read_text())["decision"]
