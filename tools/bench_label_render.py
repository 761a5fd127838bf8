"""Fast label crops (`fabrication.sim.label_render`) against crops cut from rendered fields.

    nice -n 19 .venv/bin/python tools/bench_label_render.py --fields 10x10 --batches 2

For every label of the simulated batches (film seeds the shipped model never saw), two
microscope captures both ways, in one run:

- field: `trainer.simdata.field_captures` photographs the whole field with the simulated
  microscope and cuts each label at its (jittered) true corners, as the data sets do;
- fast: `label_render.field_crops` renders each label's crops from its own film region,
  into a fresh cache folder (the save is timed with it); and again with one capture a
  label, what an enrollment needs (`trainer.harness.bench.database`), into another folder.

Printed and written to tools/results/label_render.json:
- ms a label (two captures), median and 10th-90th percentile over fields, both ways; the
  fast path's ms a label with one capture; each as wall time and as this process's CPU
  time (the machine is shared: CPU time is what one core spends);
- pixel agreement: per-label correlation and mean absolute difference (green channel) of
  a fast crop against a field crop of the same label, beside the simulator's own noise:
  the same between the two field captures of a label;
- the shipped model's genuine scores (cosine of the two captures of a label) and impostor
  scores (a capture against the other capture of every other label of the same pattern),
  quantiles side by side, with a two-sample Kolmogorov-Smirnov test on independent pairs
  (genuine: every label; impostor: each label against the next label of its pattern).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_app.atomic_write import replacing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

QUANTILES = (0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999)


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic D of two samples and its asymptotic p-value."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    d = float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())
    n = len(a) * len(b) / (len(a) + len(b))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, float(min(1.0, max(0.0, p)))


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores"


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of crops (n, S, S, 3): correlation and mean absolute difference, green channel."""
    x = a[..., 1].reshape(len(a), -1).astype(np.float64)
    y = b[..., 1].reshape(len(b), -1).astype(np.float64)
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    corr = (xc * yc).sum(1) / np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
    return corr, np.abs(x - y).mean(1)


def scores(embeddings: np.ndarray, patterns: np.ndarray) -> dict[str, np.ndarray]:
    """Genuine (capture 0 against 1 of a label) and impostor scores (capture 0 against
    capture 1 of other labels of its pattern: all pairs, and one independent pair a label)."""
    first, second = embeddings[:, 0], embeddings[:, 1]
    genuine = (first * second).sum(1)
    impostor_all, impostor_pairs = [], []
    for pattern in np.unique(patterns):
        rows = np.flatnonzero(patterns == pattern)
        if len(rows) < 2:
            continue
        matrix = first[rows] @ second[rows].T
        impostor_all.append(matrix[~np.eye(len(rows), dtype=bool)])
        impostor_pairs.append(matrix[np.arange(len(rows)), np.roll(np.arange(len(rows)), -1)])
    return {"genuine": genuine, "impostor": np.concatenate(impostor_all),
            "impostor_pairs": np.concatenate(impostor_pairs)}


def spread(values) -> dict:
    v = np.asarray(values, np.float64)
    return {"median": round(float(np.median(v)), 3), "p10": round(float(np.quantile(v, 0.1)), 3),
            "p90": round(float(np.quantile(v, 0.9)), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from edge_app.runtime import shipped_bundle

    parser.add_argument("--bundle", type=Path, default=shipped_bundle())
    parser.add_argument("--fields", default="10x10", help="fields of each simulated batch, COLSxROWS (12 labels each)")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--film-seed", type=int, default=7100, help="the first batch's film seed (then +1, ...)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "label_render.json")
    args = parser.parse_args(argv)

    from edge_app.preprocess import preprocess_batch
    from edge_app.runtime import ModelRunner
    from fabrication.sim.label_render import field_crops
    from trainer.simdata import SimSpec, field_captures, make_film, make_layout

    cols, rows = (int(v) for v in args.fields.lower().split("x"))
    runner = ModelRunner.from_bundle(args.bundle, "int8", 1)

    def embed(crops: np.ndarray) -> np.ndarray:
        flat = crops.reshape(-1, *crops.shape[2:])
        return runner.run(preprocess_batch(flat, runner.preprocess)).embedding.reshape(len(crops), 2, -1)

    ms: dict[str, list[float]] = {"field": [], "fast": [], "fast, one capture": []}
    cpu: dict[str, list[float]] = {way: [] for way in ms}

    def timed(way: str, labels: int, run, *args):
        """run(*args), its wall and CPU ms a label noted under `way`."""
        wall, used = time.perf_counter(), time.process_time()
        result = run(*args)
        ms[way].append((time.perf_counter() - wall) * 1000 / labels)
        cpu[way].append((time.process_time() - used) * 1000 / labels)
        return result

    def field_cut(*args) -> list:
        return list(field_captures(*args))

    fast_all, field_all, emb_fast, emb_field, patterns = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="label_render_") as cache:
        for b in range(args.batches):
            spec = SimSpec(f"LR{b}", args.film_seed + b, cols, rows, microscope_shots=2, handheld_shots=0)
            layout = make_layout(spec)
            film = make_film(spec, layout)
            for field in range(layout.fields_per_batch):
                cut: dict[str, dict[str, np.ndarray]] = {}
                n = layout.labels_per_field
                for label_id, shot, crop in timed("field", n, field_cut, spec, layout, film, field):
                    cut.setdefault(label_id, {})[shot] = crop
                ids, crops = timed("fast", n, field_crops, film, layout, field, spec.seed, 2, Path(cache))
                _, first = timed("fast, one capture", n, field_crops, film, layout, field, spec.seed, 1,
                                 Path(cache) / "one")
                if not np.array_equal(first[:, 0], crops[:, 0]):  # a capture is the same however many are made
                    raise SystemExit(f"field {field}: one capture differs from the first of two")
                whole = [i for i, label in enumerate(ids) if len(cut.get(label, {})) == 2]  # both captures whole
                if not whole:
                    continue
                fast = crops[whole]
                cut_crops = np.stack([np.stack([cut[ids[i]]["m0"], cut[ids[i]]["m1"]]) for i in whole])
                fast_all.append(fast)
                field_all.append(cut_crops)
                emb_fast.append(embed(fast))
                emb_field.append(embed(cut_crops))
                patterns += [layout.pattern_of(field, i) for i in whole]
            print(f"batch {b + 1}/{args.batches}: {sum(len(f) for f in fast_all):,} labels", flush=True)
    fast, field = np.concatenate(fast_all), np.concatenate(field_all)
    pattern_array = np.array(patterns)
    agreement = {}
    for name, (a, b) in {"fast vs field": (fast[:, 0], field[:, 0]), "field vs field (simulator noise)":
                         (field[:, 1], field[:, 0]), "fast vs fast": (fast[:, 1], fast[:, 0])}.items():
        corr, mad = pixel_agreement(a, b)
        agreement[name] = {"correlation": spread(corr), "mean_abs_diff_dn": spread(mad)}
    s_fast = scores(np.concatenate(emb_fast), pattern_array)
    s_field = scores(np.concatenate(emb_field), pattern_array)
    score_table = {}
    for kind, pairs in (("genuine", "genuine"), ("impostor", "impostor_pairs")):
        d, p = ks_two_sample(s_fast[pairs], s_field[pairs])
        score_table[kind] = {
            "quantiles": [{"q": q, "fast": round(float(np.quantile(s_fast[kind], q)), 4),
                           "field": round(float(np.quantile(s_field[kind], q)), 4)} for q in QUANTILES],
            "pairs": len(s_fast[kind]), "ks_pairs": len(s_fast[pairs]), "ks_d": round(d, 4), "ks_p": round(p, 4)}
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": f"tools/bench_label_render.py --fields {args.fields} --batches {args.batches} "
                   f"--film-seed {args.film_seed}",
        "labels": len(fast), "fields": len(ms["fast"]), "bundle": args.bundle.name,
        "ms_a_label_two_captures": {way: spread(ms[way]) for way in ("field", "fast")},
        "ms_a_label_one_capture": {"fast": spread(ms["fast, one capture"])},
        "cpu_ms_a_label_two_captures": {way: spread(cpu[way]) for way in ("field", "fast")},
        "cpu_ms_a_label_one_capture": {"fast": spread(cpu["fast, one capture"])},
        "crop_bytes": {"bgr_crop": int(fast[0, 0].nbytes),
                       "model_input": int(np.prod(runner.preprocess.input_shape))},  # one uint8 plane
        "pixel_agreement": agreement,
        "scores": score_table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    show(result)
    return 0


def show(result: dict) -> None:
    """The results file's figures, printed."""
    print(f"{result['labels']:,} labels, {result['machine']}")
    for captures in ("two_captures", "one_capture"):
        for way, values in result[f"ms_a_label_{captures}"].items():
            used = result[f"cpu_ms_a_label_{captures}"][way]
            print(f"  {way:5s} ms a label ({captures.replace('_', ' ')}): median {values['median']}, "
                  f"p10-p90 {values['p10']}-{values['p90']}; CPU median {used['median']}")
    for name, values in result["pixel_agreement"].items():
        print(f"  {name:34s} corr {values['correlation']}  |diff| {values['mean_abs_diff_dn']}")
    for kind, table in result["scores"].items():
        print(f"  {kind}: KS D={table['ks_d']} p={table['ks_p']} on {table['ks_pairs']:,} pairs a side")
        for row in table["quantiles"]:
            print(f"    q{row['q']:<6} fast {row['fast']:.4f}  field {row['field']:.4f}")


if __name__ == "__main__":
    raise SystemExit(main())
