"""Does score normalisation lower false accepts at equal genuine acceptance, on held-out data?

    python tools/bench_normalisation.py                       # 40 + 40 fields, the shipped model
    python tools/bench_normalisation.py --fields 10 --bundle models/default

Two simulated batches (`trainer.simdata`) of never-trained films: the labels of one are enrolled
(one microscope capture each, as `puf enroll` does), handheld photos of them are the genuine
queries, and handheld photos of the other batch's labels (never enrolled) the counterfeits. Each
query is compared, as the device compares it with classification, with every enrolled label of
its own pattern (exact cosine), and three rules score it:

* ``raw``: the best score s1 (what the device decides on);
* ``margin``: s1 - s2, the best minus the second-best label of the pattern;
* ``cohort``: (s1 - mean) / std of the query's other scores in the shard (its impostor cohort).

A genuine query counts as accepted only when its best label is its own. For each rule the
threshold is the one that accepts a given share of the genuine queries (all of them; 99%), and
the counterfeits over it are counted; the gap (lowest genuine minus highest counterfeit score)
is given in standard deviations of the counterfeits' scores, so that rules of different units
compare when none is accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RULES = ("raw", "margin", "cohort")


def embeddings(root: Path, capture: str, runner) -> tuple[list[str], list[str], np.ndarray]:
    """Label ids, patterns and fingerprints of the crops of `root` named `capture`*."""
    import cv2

    from edge_app.preprocess import preprocess_batch
    from trainer.data import FolderDataset

    dataset = FolderDataset(root)
    rows = [(label, dataset.pattern[label], path) for label in sorted(dataset.crops)
            for path in dataset.crops[label] if path.stem.startswith(capture)]
    vectors = []
    for start in range(0, len(rows), 64):
        crops = [cv2.imread(str(path), cv2.IMREAD_COLOR) for _, _, path in rows[start:start + 64]]
        vectors.append(runner.run(preprocess_batch(crops, runner.preprocess)).embedding)
    return [r[0] for r in rows], [r[1] for r in rows], np.concatenate(vectors)


def rule_scores(query: np.ndarray, enrolled: np.ndarray) -> tuple[int, dict[str, float]]:
    """The best enrolled row for a query and its score under each rule."""
    scores = enrolled @ query
    order = np.argsort(-scores)
    s1, rest = float(scores[order[0]]), scores[order[1:]]
    return int(order[0]), {"raw": s1, "margin": s1 - float(rest[0]),
                           "cohort": (s1 - float(rest.mean())) / max(float(rest.std()), 1e-6)}


def compare(genuine: dict[str, np.ndarray], impostor: dict[str, np.ndarray], accepted: np.ndarray) -> dict:
    out = {}
    for rule in RULES:
        mine, theirs = genuine[rule][accepted], impostor[rule]
        row = {"gap_in_impostor_sd": round(float((mine.min() - theirs.max()) / theirs.std()), 3)}
        for share in (1.0, 0.99):
            t = float(np.quantile(mine, 1 - share, method="lower"))
            row[f"counterfeits_over_threshold_at_{share:.0%}_genuine"] = int(np.sum(theirs >= t))
        out[rule] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/default"), help="the model's bundle")
    parser.add_argument("--fields", type=int, default=40, help="fields (12 labels each) of each batch")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/puf_normalisation"))
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)

    from edge_app.bundle_format import FORMAT_FILES, Manifest
    from edge_app.preprocess import Preprocess
    from edge_app.runtime import ModelRunner
    from trainer.simdata import SimSpec, render_dataset

    manifest = Manifest.read(args.bundle)
    runner = ModelRunner(args.bundle / FORMAT_FILES["int8"], 2, manifest.embedding_dim,
                         len(manifest.pattern_classes), Preprocess.from_dict(manifest.preprocessing))
    roots = {}
    for name, seed in (("enrolled", 31), ("never", 32)):
        roots[name] = args.cache / f"{name}_{args.fields}"
        render_dataset(roots[name], [SimSpec(f"N{seed}", seed, args.fields, 1, microscope_shots=1, handheld_shots=2,
                                             seed=seed)], workers=2, progress=True)
    ids, patterns, enrolled = embeddings(roots["enrolled"], "m", runner)
    by_pattern = {p: np.flatnonzero(np.asarray(patterns) == p) for p in set(patterns)}
    scored = {}
    for kind, root in (("genuine", roots["enrolled"]), ("counterfeit", roots["never"])):
        q_ids, q_patterns, queries = embeddings(root, "h", runner)
        rows, right = {rule: [] for rule in RULES}, []
        for label, pattern, vector in zip(q_ids, q_patterns, queries, strict=True):
            shard = by_pattern.get(pattern, np.zeros(0, int))
            if len(shard) < 3:
                continue  # a cohort needs a few labels
            best, values = rule_scores(vector, enrolled[shard])
            right.append(ids[shard[best]] == label)
            for rule in RULES:
                rows[rule].append(values[rule])
        scored[kind] = ({rule: np.asarray(v) for rule, v in rows.items()}, np.asarray(right))
    (genuine, right), (impostor, _) = scored["genuine"], scored["counterfeit"]
    sizes = [len(v) for v in by_pattern.values() if len(v) >= 3]
    report = {"bundle": str(args.bundle), "enrolled_labels": len(ids),
              "labels_per_shard": {"min": min(sizes), "median": float(np.median(sizes)), "max": max(sizes)},
              "genuine_queries": int(len(right)), "genuine_best_is_own": int(right.sum()),
              "counterfeit_queries": int(len(impostor["raw"])), "rules": compare(genuine, impostor, right)}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
