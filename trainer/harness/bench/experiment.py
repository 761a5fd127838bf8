"""One bench run: build (or reuse) the database and the photos, then measure everything."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_app.bundle_format import Manifest
from edge_app.verify import Verifier
from trainer.enroll import DEFAULT_BUDGET_MB
from trainer.harness import paper
from trainer.harness.bench import database, exact, keypoints, normalisation, queries, whole
from trainer.harness.bench.plan import BenchPlan


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": round(float(v.mean()), 3), "median": round(float(np.median(v)), 3),
            "p90": round(float(np.percentile(v, 90)), 3), "p99": round(float(np.percentile(v, 99)), 3)}


def summarise(outcomes: list[queries.Outcome]) -> dict:
    """Per kind: photos, accuracy (genuine: accepted as their own label; others: not accepted),
    unreadable photos, and the per-step times of the readable ones."""
    out = {}
    for kind in queries.KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if not mine:
            continue
        readable = [o for o in mine if o.verdict != "unreadable"]
        out[kind] = {
            "photos": len(mine), "correct": sum(o.correct for o in mine),
            "accuracy": round(sum(o.correct for o in mine) / len(mine), 6),
            "accepted": sum(o.verdict == "genuine" for o in mine),
            "accepted_wrong_label": sum(o.verdict == "genuine" and o.matched != o.label_id for o in mine),
            "unreadable": len(mine) - len(readable),
            "timings_ms": {step: _stats(o.timings_ms.get(step) for o in readable)
                           for step in ("segment", "model", "search", "total")},
            "wall_ms": _stats(o.wall_ms for o in readable),
        }
    return out


def keypoint_baseline(plan: BenchPlan, verifier, labels: database.Labels, photos: dict, features_of) -> dict:
    """Exhaustive SIFT matching of queries against a gallery of enrolled labels."""
    gallery_ids = labels.ids[:plan.keypoint_gallery]
    gallery = {label: features_of(label) for label in tqdm(gallery_ids, desc="keypoints: gallery", unit="label")}
    wanted = {"genuine": [p for p in photos["genuine"] if p.label_id in gallery][:plan.keypoint_queries],
              "counterfeit": photos["counterfeit"][:plan.keypoint_queries],
              "clone": [p for p in photos["clone"] if p.label_id in gallery][:plan.keypoint_queries]}
    rows = {}
    per_comparison, extract = [], []
    for kind, chosen in wanted.items():
        correct = unreadable = 0
        inliers = []
        for photo in tqdm(chosen, desc=f"keypoints: exhaustive, {kind}", unit="photo"):
            cut = queries.device_crop(verifier, queries.read_photo(photo), photo.corners_px)
            if cut is None:
                unreadable += 1
                continue
            result = keypoints.identify(cut[0][0], gallery)
            inliers.append(result.inliers)
            extract.append(result.extract_ms)
            per_comparison.append(result.match_ms / len(gallery))
            correct += (result.label_id == photo.label_id) if kind == "genuine" else (result.label_id is None)
        if chosen:
            rows[kind] = {"photos": len(chosen), "correct": correct, "accuracy": round(correct / len(chosen), 6),
                          "unreadable": unreadable, "best_inliers": _stats(inliers)}
    compare = float(np.median(per_comparison)) if per_comparison else 0.0
    ext = float(np.median(extract)) if extract else 0.0
    return {"gallery_labels": len(gallery), "min_inliers": keypoints.MIN_INLIERS, "kinds": rows,
            "extract_ms": round(ext, 3), "ms_per_comparison": round(compare, 4),
            "ms_per_query_gallery": round(ext + compare * len(gallery), 2),
            "ms_per_query_at_paper_labels": round(ext + compare * paper.LABELS, 1),
            "ms_per_query_at_paper_vectors": round(ext + compare * plan.vectors, 1)}


def second_stage(plan: BenchPlan, verifier, photos: dict, features_of, threshold: float) -> dict:
    """Keypoints re-checking the fingerprint search's top-k candidates, k = 1..top_k."""
    checked: dict[str, list] = {}
    for kind in queries.KINDS:
        results: list[tuple[queries.Photo, keypoints.SecondStage | None]] = []
        for photo in tqdm(photos[kind][:plan.second_stage], desc=f"second stage: {kind}", unit="photo"):
            cut = queries.device_crop(verifier, queries.read_photo(photo), photo.corners_px)
            if cut is None:
                results.append((photo, None))
                continue
            crops, glyph = cut
            candidates = queries.top_candidates(verifier, crops, glyph, plan.top_k, plan.augmented)
            results.append((photo, keypoints.second_stage(crops[0], candidates, features_of)))
        if results:
            checked[kind] = results

    def accepted(photo, label) -> bool:
        return label is not None and (photo.kind != "genuine" or label == photo.label_id)

    rows = []
    for k in range(0, plan.top_k + 1):
        for mode in ("veto", "decide") if k else ("fingerprint only",):
            row: dict[str, Any] = {"k": k, "mode": mode}
            added: list[float] = []
            for kind, results in checked.items():
                n = 0
                for photo, stage in results:
                    if stage is None:
                        continue
                    if k == 0:
                        top = stage.candidates[:1]
                        label = top[0][0] if top and top[0][1] >= threshold else None
                    else:
                        label, ms = stage.decide(k, threshold if mode == "veto" else None)
                        added.append(ms)
                    n += accepted(photo, label) if kind == "genuine" else label is not None
                row[f"{kind}_accepted"] = round(n / len(results), 6)
                row[f"{kind}_photos"] = len(results)
            row["added_ms"] = _stats(added) if added else {"median": 0.0, "p99": 0.0}
            rows.append(row)
    return {"rows": rows, "min_inliers": keypoints.MIN_INLIERS,
            "note": "veto: a candidate must clear the fingerprint threshold and match by keypoints; decide: the "
                    "first of the top k that matches by keypoints is accepted, whatever its fingerprint score"}


def run(plan: BenchPlan, bundle: Path, cache: Path, memory_budget_mb: float = DEFAULT_BUDGET_MB) -> dict:
    """The whole experiment; returns the results (see `report` for how they are shown). A part
    sized 0 (unclassified, exact, whole_queries, keypoint_gallery, second_stage, normalisation) is left out:
    None."""
    import faiss

    started = time.perf_counter()
    steps = {}
    t = time.perf_counter()
    labels = database.enrolled_labels(plan, cache)
    steps["render_enrolled_s"] = time.perf_counter() - t
    t = time.perf_counter()
    real = database.real_fingerprints(plan, labels, bundle, cache)
    steps["embed_s"] = time.perf_counter() - t
    t = time.perf_counter()
    shard_folder = database.build_shards(plan, labels, real, bundle, cache, memory_budget_mb)
    steps["shards_s"] = time.perf_counter() - t
    t = time.perf_counter()
    photos = queries.take_photos(plan, labels.ids, cache)
    steps["photos_s"] = time.perf_counter() - t
    t = time.perf_counter()
    db = database.open_database(bundle, shard_folder)
    steps["open_ms"] = (time.perf_counter() - t) * 1000
    faiss.omp_set_num_threads(2)
    threshold = db.threshold
    classified = Verifier(db, classify=True, num_threads=2)
    everything = [p for kind in queries.KINDS for p in photos[kind]]
    classified.verify_image(queries.read_photo(everything[0]))  # warm up the model and the first pages
    t = time.perf_counter()
    with_classes = queries.verify_photos(classified, everything, "verify, with classification")
    steps["verify_classified_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rules = normalisation.run(classified, photos, plan.normalisation, plan.augmented) if plan.normalisation else None
    steps["normalisation_s"] = time.perf_counter() - t
    unclassified = Verifier(db, classify=False, num_threads=2)
    subset = [p for kind in queries.KINDS for p in photos[kind][:plan.unclassified]]
    t = time.perf_counter()
    without = queries.verify_photos(unclassified, subset, "verify, every shard (no classification)") if subset else []
    steps["verify_unclassified_s"] = time.perf_counter() - t
    t = time.perf_counter()
    exact_scores = exact.best_scores(classified, photos, plan.exact,
                                     partial(database.pattern_vectors, plan, labels, real)) if plan.exact else None
    steps["exact_s"] = time.perf_counter() - t
    t = time.perf_counter()
    one_index = whole.run(plan, labels, real, classified, photos["genuine"][:plan.whole_queries], bundle, cache,
                          memory_budget_mb) if plan.whole_queries else None
    steps["whole_index_s"] = time.perf_counter() - t
    del real

    by_index = {label: i for i, label in enumerate(labels.ids)}
    cache_features: dict[str, keypoints.Features] = {}

    def features_of(label_id: str) -> keypoints.Features:
        source = database.source_label(label_id)
        if source not in cache_features:
            cache_features[source] = keypoints.features(labels.crops[by_index[source]])
        return cache_features[source]

    t = time.perf_counter()
    baseline = keypoint_baseline(plan, classified, labels, photos, features_of) if plan.keypoint_gallery else None
    steps["keypoint_baseline_s"] = time.perf_counter() - t
    t = time.perf_counter()
    stage = second_stage(plan, classified, photos, features_of, threshold) if plan.second_stage else None
    steps["second_stage_s"] = time.perf_counter() - t
    section = db.manifest.shards
    entries = list(section.entries.values())
    manifest = Manifest.read(bundle)
    model = manifest.model
    shard_sizes = [e.vectors for e in entries]
    return {
        "plan": plan.to_dict(),
        "database": {"how": database.describe(plan, labels), "vectors": section.vectors,
                     "labels": section.labels, "real_labels": len(labels), "shards": len(shard_sizes),
                     # real labels are distinct, each its own film region: every accuracy figure is of them;
                     # stand-ins count for capacity, memory and search time only
                     "stand_in_labels": section.labels - len(labels),
                     "shard_vectors": _stats(shard_sizes),
                     "bytes": sum(e.extra["bytes"] for e in entries),  # tuning figures: enrollment's
                     "index_kinds": sorted({e.extra["kind"] for e in entries}),
                     "nprobe": _stats((e.search or {}).get("nprobe") for e in entries),
                     "recall_at_1_genuine_like": _stats(e.extra["recall_at_1"]["genuine_like"] for e in entries),
                     "folder": str(shard_folder)},
        "model": {"name": model.name if model else None, "version": model.version if model else None,
                  "format": "int8", "input": (manifest.preprocessing or {}).get("input_size"),
                  "embedding_dim": manifest.embedding_dim},
        "threshold": threshold,
        "with_classification": summarise(with_classes),
        "without_classification": summarise(without),
        # in photo order, None for an unreadable photo: the report splits the photos by number
        "scores": {kind: [o.score for o in with_classes if o.kind == kind] for kind in queries.KINDS},
        "exact_scores": exact_scores,  # the same photos' (the first plan.exact of each kind) by exact search
        "times_ms": {step: [o.timings_ms.get(step) for o in with_classes if o.verdict != "unreadable"]
                     for step in ("model", "search", "total")},
        "times_unclassified_ms": {"search": [o.timings_ms.get("search") for o in without
                                             if o.verdict != "unreadable"]},
        "whole_index": one_index,
        "keypoint_baseline": baseline,
        "second_stage": stage,
        "normalisation": rules,
        "steps": {k: round(v, 1) for k, v in steps.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine(),
                    "faiss": faiss.__version__, "threads": 2, "load_average_end": os.getloadavg()},
        "seconds": round(time.perf_counter() - started, 1),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
