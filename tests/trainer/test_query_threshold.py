"""`puf evaluate --query-far`: a threshold for the per-query false-accept rate at the deployed
shard size, written into the decision the device reads, on the small real bundle of
`tests.bundle_support` (12 labels enrolled, handheld captures of 24)."""

import json

import pytest

from edge_app.bundle import load_bundle
from edge_app.bundle_format import MANIFEST, Manifest
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, keys, sim_batch, write_crop_folder
from trainer.enroll import enroll
from trainer.evaluation import evaluate
from trainer.tail import pair_far_for, query_far


@pytest.fixture
def enrolled(base, fresh, key, tmp_path):
    enroll(fresh, enroll_crops(base), key, progress=False)
    return fresh, write_crop_folder(tmp_path / "queries", sim_batch(), (0, 1), shots=0, handheld=1)


def test_the_threshold_for_a_per_query_far_is_written_and_the_device_reads_it(base, enrolled, key):
    bundle, queries = enrolled
    report = evaluate(bundle, [queries], query_far_target=0.05, classify=False, private_key=key,
                      progress=False, frr_bound=0.25).to_dict()
    decision = json.loads((bundle / MANIFEST).read_text())["decision"]
    # without classification every query meets all 12 labels: the per-comparison FAR is the share
    assert decision["query_far"] == 0.05 and decision["labels_per_shard"] == 12
    assert decision["far"] == pytest.approx(pair_far_for(0.05, 12))
    tail = decision["tail"]
    assert tail["pairs"] == report["comparisons"]["impostor_pairs"] == 276 and tail["fit_scores"] == 50
    assert tail["method"] in ("empirical", "generalized Pareto") and "Pareto" in tail["fit"]
    assert decision["query_far_at_threshold"] <= 0.05 * 1.001
    assert report["per_query"]["shards"] == [{"labels": 12, "shards": 1,
                                              "far_per_query": pytest.approx(decision["query_far_at_threshold"])}]
    assert report["written"] and report["decisions_at_threshold"]["impostor_accepted"] == 0.0
    device = load_bundle(bundle, keys(base)[1])  # re-signed, trusted, and its decision kept as written
    assert device.threshold == pytest.approx(decision["threshold"])
    assert device.decision.query_far == 0.05 and device.decision.labels_per_shard == 12
    assert device.decision.tail == tail
    assert device.manifest.to_dict()["decision"] == decision


def test_a_larger_deployment_needs_a_higher_threshold(enrolled):
    bundle, queries = enrolled
    thresholds = [evaluate(bundle, [queries], query_far_target=0.05, classify=False, progress=False,
                           deployed_labels=n).to_dict()["decision"]["threshold"] for n in (12, 120)]
    assert thresholds[0] < thresholds[1]
    report = evaluate(bundle, [queries], far=2e-2, classify=False, progress=False, deployed_labels=120).to_dict()
    planned = report["per_query"]["planned"]
    assert planned["labels_per_shard"] == 120
    assert planned["far_per_query"] == pytest.approx(query_far(report["per_query"]["pair_far"], 120))
    assert planned["far_per_query"] > report["per_query"]["largest_shard_far_per_query"]


def test_a_per_query_far_the_comparisons_cannot_reach_is_refused_and_nothing_written(enrolled, key):
    bundle, queries = enrolled
    before = (bundle / MANIFEST).read_bytes()
    with pytest.raises(PufError, match="extrapolated from the impostor score tail needs at least"):
        evaluate(bundle, [queries], query_far_target=1e-5, classify=False, private_key=key, progress=False,
                 frr_bound=0.25)
    assert (bundle / MANIFEST).read_bytes() == before
    for bad in ({"query_far_target": 0.0}, {"query_far_target": 1.5}, {"query_far_target": 0.05, "deployed_labels": 0}):
        with pytest.raises(PufError, match="between 0 and 1|positive number"):
            evaluate(bundle, [queries], classify=False, progress=False, **bad)


@pytest.mark.parametrize("field, value, words", [
    ("query_far", 0, "between 0 and 1"), ("query_far", 1.5, "between 0 and 1"), ("query_far", "1e-5", "between"),
    ("labels_per_shard", 0, "positive whole"), ("labels_per_shard", 2.5, "positive whole"),
    ("vectors_per_shard", -3, "positive whole"), ("vectors_per_shard", "94445", "positive whole"),
    ("tail", [1], "an object"),
    ("checked_sizes", {"labels": 5, "vectors": 5}, "a list of objects"),
    ("checked_sizes", [{"labels": 5}], "a list of objects"), ("checked_sizes", [{"labels": 0, "vectors": 3}], "a list"),
    ("checked_sizes", [{"labels": True, "vectors": 3}], "a list"), ("checked_sizes", [7], "a list of objects"),
])
def test_a_manifest_with_a_malformed_deployed_size_decision_is_refused(field, value, words):
    data = {"format_version": 1, "decision": {"threshold": 0.7, field: value}}
    with pytest.raises(PufError, match=f'"decision" "{field}" must be .*{words}'):
        Manifest.from_dict(data)


def test_puf_evaluate_reports_the_per_query_far_at_the_shard_sizes(enrolled, capsys):
    from edge_app.cli import main

    bundle, queries = enrolled
    assert main(["evaluate", "--bundle", str(bundle), "--queries", str(queries), "--no-classify",
                 "--query-far", "0.05", "--deployed-labels", "120"]) == 0
    out = capsys.readouterr().out
    assert "276 impostor comparisons" in out and "at 12 labels (1 shards)" in out
    assert "threshold set for 0.05 per query at 120 labels a shard" in out
    assert "at the planned 120 labels a shard" in out


def test_the_report_is_typed_and_puf_evaluate_json_prints_its_dict(enrolled, capsys):
    from edge_app.cli import main
    from trainer.evaluation import EvaluationReport

    bundle, queries = enrolled
    report = evaluate(bundle, [queries], far=2e-2, classify=False, progress=False)
    assert isinstance(report, EvaluationReport) and not report.written and report.figures is None
    data = report.to_dict()
    parts = ["bundle", "queries", "classify", "genuine_queries", "impostor_queries", "comparisons", "decision",
             "decisions_at_threshold", "per_query", "pattern_accuracy", "timings_ms", "written"]
    assert list(data) == parts + (["too_few_pairs"] if report.too_few_pairs else []), list(data)
    assert data["genuine_queries"] == report.genuine_queries == 12 and data["decision"] == report.decision
    assert main(["evaluate", "--bundle", str(bundle), "--queries", str(queries), "--no-classify", "--far", "2e-2",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(data) and printed["comparisons"] == data["comparisons"]
