"""Verification accuracy of a bundle on labels it never saw, through the device runtime.

Each label of a folder data set is enrolled from one capture (its first microscope
capture, as the factory enrolls) and queried with its other captures (handheld photos
by default: new captures from the field-camera model, never augmented copies). Every
query is scored against every enrolled label: genuine pairs are a query and its own
label, impostor pairs a query and any other label. Reported: TAR at FAR 1e-3, 1e-4,
1e-5 (each marked unresolved when there are too few impostor pairs to measure it), EER,
and pattern accuracy of the pattern head. Run as ``python tools/model_accuracy.py BUNDLE DATA``.

(`puf evaluate`, `trainer.evaluation`, evaluates a bundle as the device searches it: its
shards, its threshold.)

Same-pattern impostor pairs get their own report (`at_scale`): at the paper's scale a
counterfeit meets about 945 labels of its own pattern, and the upper tail of those scores
sets the threshold a per-query FAR needs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_app.bundle_format import Manifest
from edge_app.preprocess import preprocess_batch
from edge_app.runtime import ModelRunner
from trainer.data import load_crops, open_dataset
from trainer.metrics import REPORTED_FARS, pair_scores, verification_report
from trainer.tail import Tail, pair_far_for

PAPER_SHARD_LABELS = 945  # the paper's 41,556 labels over the 44 patterns: one shard's labels


def evaluate_bundle(bundle: Path, data: Path, fmt: str = "int8", enroll: str = "m0",
                    queries: str = "h", num_threads: int = 2,
                    fars: tuple[float, ...] = REPORTED_FARS, shard_labels: int = PAPER_SHARD_LABELS) -> dict:

    manifest = Manifest.read(bundle)
    runner = ModelRunner.from_bundle(bundle, fmt, num_threads)
    dataset = open_dataset(Path(data))
    label_ids = dataset.labels()
    crops = load_crops(dataset, label_ids, manifest.pattern_classes or [])
    names = np.array(crops.capture)
    enroll_idx = np.flatnonzero(names == enroll)
    query_idx = np.flatnonzero(np.char.startswith(names, queries) & (names != enroll))

    def run(index):
        out_e, out_p = [], []
        for i in range(0, len(index), 256):
            out = runner.run(preprocess_batch(crops.images[index[i:i + 256]], runner.preprocess))
            out_e.append(out.embedding)
            out_p.append(out.pattern_logits)
        return np.concatenate(out_e), np.concatenate(out_p)

    start = time.perf_counter()
    enroll_emb, _ = run(enroll_idx)
    query_emb, logits = run(query_idx)
    seconds = time.perf_counter() - start
    genuine, impostor = pair_scores(enroll_emb, crops.label[enroll_idx], query_emb,
                                    crops.label[query_idx])
    report = verification_report(genuine, impostor, fars)
    _, same_pattern = pair_scores(enroll_emb, crops.label[enroll_idx], query_emb, crops.label[query_idx],
                                  crops.pattern[enroll_idx], crops.pattern[query_idx])
    report["same_pattern"] = at_scale(genuine, same_pattern, shard_labels, fars)
    report.update(
        bundle=str(bundle), format=fmt, data=str(data), labels=len(enroll_idx),
        queries=len(query_idx), enroll_capture=enroll, query_captures=queries + "*",
        pattern_accuracy=float(np.mean(logits.argmax(1) == crops.pattern[query_idx])),
        ms_per_crop_preprocess_and_model=round(1000 * seconds / (len(enroll_idx) + len(query_idx)), 3),
        threshold_in_bundle=manifest.threshold,
    )
    # handheld photos the device's segmentation could not cut (trainer.simdata --segment)
    # are genuine queries the device could not accept: count them against TAR
    failed: dict[str, int] = {}
    for label_id in label_ids:
        for path in (dataset.root / "crops" / label_id).glob("x*.failed"):
            reason = path.stem.split("_", 1)[-1]
            failed[reason] = failed.get(reason, 0) + 1
    attempted = len(query_idx) + sum(failed.values())
    report["segmentation"] = {"attempted": attempted, "failed": failed,
                              "success_rate": len(query_idx) / attempted if attempted else None}
    for row in report["tar_at_far"]:
        row["tar_end_to_end"] = row["tar"] * len(query_idx) / attempted if attempted else None
    threshold = manifest.threshold
    report["at_bundle_threshold"] = {
        "tar": float(np.mean(genuine > threshold)),
        "far": float(np.mean(impostor > threshold)),
    }
    return report


def at_scale(genuine: np.ndarray, same_pattern: np.ndarray, shard_labels: int,
             fars: tuple[float, ...] = REPORTED_FARS) -> dict:
    """What decides false accepts at scale: a counterfeit is compared only with the labels of
    its own pattern's shard, so its chance of a false accept is that of the best of
    `shard_labels` same-pattern impostor scores (`trainer.tail`). For each per-query FAR, the
    threshold the impostor tail gives at that shard size, and the genuine pairs it accepts."""

    tail = Tail.fit(same_pattern)
    rows = []
    for far in fars:
        pair_far = pair_far_for(far, shard_labels)
        below, method = tail.threshold(pair_far)
        rows.append({"query_far": far, "pair_far": pair_far, "threshold": round(float(below), 6), "method": method,
                     "beyond_measured": round(1 / (pair_far * tail.pairs), 1),
                     "tar": float(np.mean(genuine > below))})
    return {"impostor_pairs": int(len(same_pattern)), "impostor_max": float(same_pattern.max()),
            "impostor_mean": float(same_pattern.mean()), "shard_labels": shard_labels,
            "tail": tail.to_dict(), "tar_at_query_far": rows}

