"""The speed benchmarks' baselines: `tools/bench_verify.py` and `tools/bench_segmentation.py` time
another checkout beside this one and must fail loudly when its verdicts or labels differ."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_app.segment import segment
from tests.segment_support import LABEL_PX, make_layout, snap
from tools.bench_segmentation import label_difference, load_baseline
from tools.bench_verify import compare

ROOT = Path(__file__).resolve().parents[1]


def _verdict(**changes) -> dict:
    record = {"verdict": "genuine", "label_id": "E2E-0001-03", "score": 0.912345, "threshold": 0.834155,
              "pattern": "star", "pattern_confidence": 0.998, "reason_code": "matches", "searched": ["star"],
              "corners_px": [[10.0, 10.0], [310.0, 10.0], [310.0, 310.0], [10.0, 310.0]], "source": "p0#0",
              "timings_ms": {"segment": 1.0, "model": 0.5, "search": 0.1, "total": 1.6}}
    return record | changes


def _run(*verdicts: dict) -> dict:
    return {"verdicts": [[v] for v in verdicts]}


def test_verify_bench_names_every_verdict_that_differs_and_only_those():
    base = _run(_verdict(), _verdict(source="p1#0"), _verdict(source="p2#0"))
    slower = _run(_verdict(timings_ms={"total": 9.0}), _verdict(source="p1#0", score=0.912345 + 5e-6),
                  _verdict(source="p2#0", corners_px=[[10.1, 10.0], [310.0, 10.0], [310.0, 310.0], [10.0, 310.0]]))
    assert compare(base, slower) == []  # timings, float rounding and a corner's last printed digit are not verdicts
    changed = _run(_verdict(score=0.9124), _verdict(source="p1#0", verdict="counterfeit", label_id=None),
                   _verdict(source="p2#0", corners_px=[[11.0, 10.0], [310.0, 10.0], [310.0, 310.0], [10.0, 310.0]]))
    found = compare(base, changed)
    assert len(found) == 4
    assert "p0#0: score" in found[0]
    assert any("p1#0: verdict 'counterfeit'" in f for f in found) and any("p1#0: label_id None" in f for f in found)
    assert "p2#0: corners" in found[-1]
    assert compare(base, _run(_verdict(), _verdict(source="p1#0"), _verdict(source="p2#0"), )) == []


def test_verify_bench_counts_a_photo_with_another_number_of_labels():
    base = _run(_verdict())
    two = {"verdicts": [[_verdict(), _verdict(source="p0#1")]]}
    assert compare(base, two) == ["photo p0: 2 verdicts, the baseline 1"]


def _bench(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_verify_bench_refuses_a_baseline_that_is_not_a_checkout_and_no_rounds_or_threads(tmp_path):
    run = _bench("bench_verify.py", "--baseline", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 2
    assert "is not a checkout of this project" in run.stderr
    for option in ("--rounds", "--threads"):
        run = _bench("bench_verify.py", option, "0", cwd=tmp_path)
        assert run.returncode == 2
        assert f"{option} " in run.stderr and "(got 0)" in run.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_segmentation_bench_refuses_a_baseline_that_is_not_a_checkout(tmp_path):
    run = _bench("bench_segmentation.py", "--baseline", str(tmp_path), "--out", str(tmp_path / "out.json"),
                 cwd=tmp_path)
    assert run.returncode == 1
    assert "no edge_app/segment.py there" in run.stderr
    assert not (tmp_path / "out.json").exists()


def test_segmentation_bench_refuses_threads_out_of_range(tmp_path):
    for threads in ("0", "65"):
        run = _bench("bench_segmentation.py", "--threads", threads, "--out", str(tmp_path / "out.json"), cwd=tmp_path)
        assert run.returncode == 2
        assert f"--threads must be 1-64 (got {threads})" in run.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was simulated or written


def test_segmentation_bench_compares_labels_bit_for_bit():
    layout = make_layout()
    image, _ = snap(layout, 0)
    baseline = load_baseline(ROOT)  # this checkout as its own baseline: the same labels
    ours, theirs = segment(image, LABEL_PX), baseline.segment(image, LABEL_PX)
    assert len(ours.labels) >= 6
    assert label_difference(ours, theirs) is None
    moved = copy.deepcopy(theirs)
    moved.labels[2].crop = moved.labels[2].crop.copy()
    moved.labels[2].crop[5, 5] ^= np.uint8(1)  # one pixel, one level
    assert label_difference(ours, moved) == "label 2: crop differ"
    moved.labels.pop()
    assert label_difference(ours, moved) == f"{len(ours.labels)} labels, the baseline {len(ours.labels) - 1}"
