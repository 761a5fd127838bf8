"""Reproduce the shipped default model (models/default) from scratch, with one command:

    nohup nice -n 19 python tools/train_default_model.py > train_default.log 2>&1 &

1. stage-1 crops: 4 films of the default texture, 3,840 labels, two microscope and three
   handheld captures each                                          -> WORK/sim_train
2. stage-2 crops: 14 films of four textures (default, coarse, fine, faceted), 16,800 labels,
   two microscope and two handheld captures each                    -> WORK/sim_train_v2
3. held-out test crops, labels never trained on, one microscope capture to enroll and three
   new handheld photos cut by the device's segmentation to query:
   films of the training textures                                   -> WORK/sim_test
   films of textures no training film had (UNSEEN_STYLES)           -> WORK/sim_test_unseen
4. stage 1: train from scratch with trainer/configs/edge.toml       -> WORK/run_edge
5. stage 2: fine-tune it with trainer/configs/edge_finetune.toml    -> WORK/run_edge_v2
6. export the bundle (int8 TFLite + ONNX, parity checked)           -> models/default
7. evaluate it on both test sets through the device runtime          -> models/default.eval.json
8. its threshold, for the deployed size: from the unseen-texture test's same-pattern impostor
   tail, the score a counterfeit's best match over the paper's shard of 945 labels clears
   with chance 1e-5 (`trainer.model_accuracy.at_scale`)             -> manifest decision
9. the model card                                                   -> models/default.md
10. (a separate run) the threshold for the deployed shard size, from distinct labels only:
   `puf bench` with the sizes tools/results/bench_paper_scale_distinct.md states, then
   `python tools/threshold_from_bench.py bench_out/bench.json` (chosen on the first half of
   the counterfeit photos, checked on the other half), and step 9 again

Every step resumes: run the command again after a stop and it continues where it was.
`--init BUNDLE_OR_RUN` starts stage 2 from that model instead of training stage 1.

`--resnet50` trains the design card's network instead (trainer/configs/resnet50.toml, from
scratch on the stage-2 crops, no stage 1), exports it to WORK/resnet50 (its ONNX file is too
large for the repository), evaluates it on the same test films beside the shipped model, sets
its threshold the same way, and writes its card to models/resnet50.md:

    nohup nice python tools/train_default_model.py --resnet50 > train_resnet50.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STYLES = ("default", "coarse", "fine", "faceted")
# grain size, contrast and mottling no training film had
UNSEEN_STYLES = ("mottled", "grain_um=5,contrast=0.7", "grain_um=6,contrast=1.4,mottling=0.4",
                 "grain_um=2,faceted=yes,mottling=2")
STAGE1_DATA = ["--batches", "4", "--first-seed", "1", "--fields", "8x10", "--microscope-shots", "2",
               "--handheld-shots", "3", "--prefix", "SIMT"]
STAGE2_DATA = ["--batches", "14", "--first-seed", "201", "--fields", "10x10", "--microscope-shots", "2",
               "--handheld-shots", "2", "--prefix", "SIMV",
               *[arg for style in TRAIN_STYLES for arg in ("--film-style", style)]]
TEST_DATA = ["--batches", "2", "--first-seed", "101", "--fields", "6x7", "--microscope-shots", "1",
             "--handheld-shots", "3", "--prefix", "SIMH", "--capture-seed", "7", "--segment"]
UNSEEN_DATA = ["--batches", "4", "--first-seed", "301", "--fields", "8x10", "--microscope-shots", "1",
               "--handheld-shots", "3", "--prefix", "SIMU", "--capture-seed", "7", "--segment",
               *[arg for style in UNSEEN_STYLES for arg in ("--film-style", style)]]


def step(title: str) -> None:
    print(f"\n== {title} ({time.strftime('%H:%M:%S')})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/work/data"),
                        help="where data and the runs go (default /work/data)")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--init", type=Path, metavar="BUNDLE_OR_RUN",
                        help="stage 2 starts from this model (a copy of the shipped bundle, say); no stage 1")
    parser.add_argument("--baseline", type=Path, metavar="BUNDLE",
                        help="also evaluate this model on the same test films, for the card (the one it replaces)")
    parser.add_argument("--resnet50", action="store_true",
                        help="train, evaluate and describe the design card's ResNet-50 instead (see above)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.resnet50:
        return resnet50(args)
    work = args.work

    step("1-3. crops")
    stage1_data = None if args.init else simdata(args, "sim_train", STAGE1_DATA)
    stage2_data = simdata(args, "sim_train_v2", STAGE2_DATA)
    tests = test_sets(args)

    step("4-5. training")
    stage1 = args.init
    if stage1 is None:
        stage1 = work / "run_edge"
        train(stage1, stage1_data, "edge", None)
    run = work / "run_edge_v2"
    train(run, stage2_data, "edge_finetune", stage1)

    step("6. export")
    export(run, args.bundle)

    step("7. evaluation on held-out labels")
    results = evaluate(args.bundle, tests, args.baseline, "int8, the model it replaces")
    args.bundle.with_name(args.bundle.name + ".eval.json").write_text(json.dumps(results, indent=1))

    step("8. threshold for the deployed size")
    set_threshold(args.bundle, results["unseen textures"]["int8"])

    step("9. model card")
    card = model_card(args.bundle, results, run, stage1)
    args.bundle.with_name(args.bundle.name + ".md").write_text(card)
    print(card)
    return 0


def resnet50(args: argparse.Namespace) -> int:
    """The design card's ResNet-50 with the stage-2 recipe, beside the shipped edge model."""
    stage2_data = simdata(args, "sim_train_v2", STAGE2_DATA)
    tests = test_sets(args)
    step("training the ResNet-50")
    run = args.work / "run_resnet50"
    train(run, stage2_data, "resnet50", None)
    step("export")
    bundle = args.work / "resnet50"
    export(run, bundle)
    step("evaluation on held-out labels")
    # int8 only: the device's format (export checked the float files against it); the float
    # ResNet-50 through onnxruntime would add a quarter of an hour on two cores
    results = evaluate(bundle, tests, args.bundle, "int8, the shipped edge model", formats=("int8",))
    card_path = ROOT / "models" / "resnet50.md"
    card_path.with_suffix(".eval.json").write_text(json.dumps(results, indent=1))
    set_threshold(bundle, results["unseen textures"]["int8"])
    step("model card")
    card = resnet50_card(bundle, results, run)
    card_path.write_text(card)
    print(card)
    return 0


def simdata(args: argparse.Namespace, folder: str, data: list[str]) -> Path:
    subprocess.run([sys.executable, "-m", "trainer.simdata", str(args.work / folder), *data,
                    "--workers", str(args.workers)], check=True, cwd=ROOT)
    return args.work / folder


def test_sets(args: argparse.Namespace) -> dict[str, Path]:
    return {"training textures": simdata(args, "sim_test", TEST_DATA),
            "unseen textures": simdata(args, "sim_test_unseen", UNSEEN_DATA)}


def train(run: Path, data: Path, config: str, init: Path | None) -> None:
    """`puf train`, or its resumption when the run folder already holds its config."""
    command = [sys.executable, "-m", "edge_app.cli", "train", str(run), "--data", str(data)]
    command += ["--config", str(run / "config.json") if (run / "config.json").exists() else config]
    if init and not (run / "config.json").exists():
        command += ["--init", str(init)]
    subprocess.run(command, check=True, cwd=ROOT)


def export(run: Path, bundle: Path) -> None:
    subprocess.run([sys.executable, "-m", "edge_app.cli", "export", str(run), "--out", str(bundle),
                    "--formats", "int8,onnx", "--version", "sim-" + time.strftime("%Y%m%d")], check=True, cwd=ROOT)


def evaluate(bundle: Path, tests: dict[str, Path], other: Path | None, other_name: str,
             formats: tuple[str, ...] = ("int8", "onnx")) -> dict:
    """The bundle (by default int8 and ONNX) on each test set, and another model's int8 beside it."""
    from trainer.model_accuracy import evaluate_bundle

    results = {name: {fmt: evaluate_bundle(bundle, data, fmt) for fmt in formats} for name, data in tests.items()}
    if other:
        for name, data in tests.items():
            results[name][other_name] = evaluate_bundle(other, data, "int8")
    return results


def set_threshold(bundle: Path, report: dict) -> None:
    """The manifest's decision from a held-out evaluation's same-pattern tail at the goal's
    per-query FAR (`trainer.metrics.QUERY_FAR_GOAL`)."""
    from edge_app.bundle_format import Decision, Manifest
    from trainer.metrics import QUERY_FAR_GOAL, device_threshold

    scale = report["same_pattern"]
    row = next(r for r in scale["tar_at_query_far"] if r["query_far"] == QUERY_FAR_GOAL)
    manifest = Manifest.read(bundle)
    manifest.decision = Decision(
        threshold=device_threshold(row["threshold"]), far=row["pair_far"], calibrated=True, query_far=QUERY_FAR_GOAL,
        labels_per_shard=scale["shard_labels"], tail=scale["tail"],
        extra={"calibrated_on": f"held-out simulated films of textures no training film had "
                                f"({Path(report['data']).name}): "
                                f"{scale['impostor_pairs']:,} same-pattern impostor comparisons of "
                                f"{report['labels']:,} never-trained labels and {report['queries']:,} new "
                                f"handheld photos; {row['method']} tail, {row['beyond_measured']:g} times "
                                "beyond the comparisons measured",
               "tar_at_that_far": row["tar"]})
    manifest.write(bundle)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _accuracy_rows(results: dict) -> list[str]:
    lines = ["| test films | model | labels | genuine / impostor pairs | EER | TAR@FAR 1e-3 | TAR@FAR 1e-4 | "
             "TAR@FAR 1e-5 | pattern acc. |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for films, by_format in results.items():
        for fmt, r in by_format.items():
            tars = [_pct(row["tar"]) + ("" if row["resolved"] else " (unresolved)") for row in r["tar_at_far"]]
            lines.append(f"| {films} | {fmt} | {r['labels']:,} | {r['genuine_pairs']:,} / {r['impostor_pairs']:,} | "
                         f"{_pct(r['eer'])} | {' | '.join(tars)} | {_pct(r['pattern_accuracy'])} |")
    return lines


def _scale_rows(results: dict) -> list[str]:
    lines = ["| test films | same-pattern impostor pairs | highest | per-query FAR | threshold | how | "
             "genuine accepted |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for films, by_format in results.items():
        for model, report in by_format.items():
            if model == "onnx":
                continue
            scale = report["same_pattern"]
            lines += [f"| {films}, {model} | {scale['impostor_pairs']:,} | {scale['impostor_max']:.3f} | "
                      f"{row['query_far']:g} | {row['threshold']:.4f} | {row['method']}, "
                      f"{row['beyond_measured']:g}x beyond measured | {_pct(row['tar'])} |"
                      for row in scale["tar_at_query_far"]]
    return lines


def _described(stage1: Path) -> str:
    """The stage-1 model in the card's words: a run folder, or a bundle by its version."""
    from edge_app.bundle_format import MANIFEST, Manifest

    if not (stage1 / MANIFEST).exists():
        return f"the stage-1 run `{stage1.name}`"
    model = Manifest.read(stage1).model
    return (f"the stage-1 model as it was shipped ({model.version if model else 'unversioned'}), through "
            "`--init`: its ONNX weights read back into the network, checked against onnxruntime")


def model_card(bundle: Path, results: dict, run: Path, stage1: Path) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["model"]
    config = model["config"]
    stage2_meta = json.loads((Path(json.loads((run / "config.json").read_text())["data"]) / "simdata.json").read_text())
    split = json.loads((run / "split.json").read_text())
    lines = [
        f"# Model card: {model['name']} {model['version']} (models/{bundle.name})",
        "",
        "The default fingerprint model the demo and `puf verify` use: one network, two heads "
        "(L2-normalised identity embedding trained with ArcFace; pattern head over the 44 "
        "classes). Reproduce from scratch with `tools/train_default_model.py` (one command, resumable).",
        "",
        "## How it was trained",
        "- **Stage 1** (`trainer/configs/edge.toml`, from scratch): 4 films of the default texture, 3,669 "
        "training labels, 2 microscope and 3 handheld captures each, 1,100 steps of batch 128 (49 min on this "
        f"2-core CPU). Stage 2 started from {_described(stage1)}.",
        f"- **Stage 2** (`trainer/configs/edge_finetune.toml`, `--init` stage 1): {len(stage2_meta['batches'])} "
        f"films of four textures ({', '.join(TRAIN_STYLES)}), {len(split['train']):,} training and "
        f"{len(split['val']):,} validation labels, 2 microscope and 2 handheld captures each, every capture "
        "rendered new by the simulator (not augmented copies of one) and augmented on the fly. Batches of "
        f"{config['batch_patterns']} patterns' labels, {config['per_label']} captures each; each label's "
        "ArcFace centre started at its mean embedding under stage 1. "
        f"{model['trained_steps']} steps of batch {config['batch_size']}, AdamW lr {config['lr']}, ArcFace "
        f"s={config['s']} m={config['m2']}: {model['train_seconds'] / 60:.0f} min of wall-clock on a shared "
        "2-core CPU (other jobs running).",
        _network(manifest),
    ]
    return "\n".join(lines + measured_sections(bundle, results))


def resnet50_card(bundle: Path, results: dict, run: Path) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text())
    model, split = manifest["model"], json.loads((run / "split.json").read_text())
    config = model["config"]
    lines = [
        f"# Model card: {model['name']} {model['version']} (the design card's ResNet-50)",
        "",
        "The network the design card names for the fingerprint: Keras' ResNet-50 (random init) with a "
        f"{manifest['embedding_dim']}-d ArcFace embedding and the pattern head, trained here beside the shipped "
        "edge model (models/default.md) with the same recipe and data. Its bundle is not kept in the repository "
        "(the sizes are below); reproduce it with `python tools/train_default_model.py --resnet50` (resumable), "
        "which writes it to WORK/resnet50.",
        "",
        "## How it was trained",
        f"- From scratch (`trainer/configs/resnet50.toml`) on {len(split['train']):,} of the edge model's stage-2 "
        f"labels, spread over its 14 films of four textures ({', '.join(TRAIN_STYLES)}), and "
        f"{len(split['val']):,} validation labels; 2 microscope and 2 handheld captures each, augmented on the "
        "fly; batches drawn at random, as the edge model's stage 1 (the config says why not grouped, and why "
        f"not all 16,464 labels, in this budget). ArcFace s={config['s']} m={config['m2']} (margin ramped over "
        f"{config['margin_warmup_steps']} steps). "
        f"{model['trained_steps']} steps of batch {config['batch_size']}, AdamW lr {config['lr']}: "
        f"{model['train_seconds'] / 60:.0f} min of wall-clock on this 2-core CPU.",
        _network(manifest),
    ]
    return "\n".join(lines + measured_sections(bundle, results))


def _network(manifest: dict) -> str:
    pre, config = manifest["preprocessing"], manifest["model"]["config"]
    return (f"- backbone `{config['backbone']}`, input {pre['input_size']} px ({pre['channel']} channel, border ring "
            f"{pre['border_mask_frac']} masked), embedding {manifest['embedding_dim']}-d. Full config: "
            "`manifest.json` -> model.config.")


def measured_sections(bundle: Path, results: dict) -> list[str]:
    """The card's files, export parity, held-out accuracy and threshold sections."""
    from edge_app.bundle_format import Manifest

    manifest = json.loads((bundle / "manifest.json").read_text())
    decision = Manifest.read(bundle).decision
    seg = results["unseen textures"]["int8"]["segmentation"]
    unseen = results["unseen textures"]["int8"]
    lines = ["", "## Files"]
    for name, info in manifest["files"].items():
        lines.append(f"- `{name}`: {info['bytes'] / 1e6:.2f} MB")
    lines += ["", "## Export parity (held-out validation crops, vs Keras)", "",
              "| file | cosine mean | cosine worst | max abs (unit emb.) | same pattern |",
              "| --- | --- | --- | --- | --- |"]
    for fmt in ("int8", "float", "onnx"):
        if fmt in manifest["parity"]:
            p = manifest["parity"][fmt]
            lines.append(f"| {fmt} | {p['cosine_mean']:.5f} | {p['cosine_worst']:.5f} | "
                         f"{p['embedding_max_abs']:.2e} | {_pct(p['pattern_agreement'])} |")
    lines += ["", "## Verification on held-out labels (new handheld captures)", "",
              "Each label is enrolled from one microscope capture (cut at its true corners, +-1.5 px) and queried "
              "with new handheld photos (any rotation, tilt, white balance, motion blur, JPEG) cut by the device's "
              "own segmentation. *Training textures*: 2 other films of the default texture (SIMH101-102). "
              f"*Unseen textures*: 4 films whose texture settings no training film had ({'; '.join(UNSEEN_STYLES)}).",
              "", *_accuracy_rows(results), "",
              f"Segmentation of the unseen-texture photos: {seg['attempted'] - sum(seg['failed'].values()):,} of "
              f"{seg['attempted']:,} cut ({seg['failed'] or 'no failures'}); a photo it cannot cut asks for a retake. "
              f"Lowest genuine score {unseen['genuine_min']:.3f}, highest impostor score {unseen['impostor_max']:.3f}.",
              "", "## At the deployed size", "",
              "On the device a counterfeit is compared with the labels of its own pattern's shard only, so what "
              "decides false accepts at scale is the upper tail of same-pattern impostor scores: at the paper's "
              f"41,556 labels a shard holds about {unseen['same_pattern']['shard_labels']} labels, and a counterfeit "
              "is accepted when the best of those comparisons clears the threshold (`trainer.tail`: empirical, then a "
              "generalized Pareto fit with its shape at the 95% upper bound, which errs towards a higher threshold).",
              "", *_scale_rows(results), "", *threshold_lines(decision)]
    return lines


def threshold_lines(decision) -> list[str]:
    """The card's paragraphs on the manifest's threshold: where it was chosen, for which shard
    size it holds, and its check on photos the choice never saw."""
    lines = [f"**Threshold in the manifest: {decision.threshold}**, for a per-query FAR of {decision.query_far:g} "
             f"at {decision.labels_per_shard} distinct labels a shard ({decision.extra['calibrated_on']}). It holds "
             f"for shards of up to {decision.labels_per_shard} labels enrolled that way; a factory whose shards hold "
             "more labels, or more copies of each, runs `puf evaluate --query-far` on its own bundle and "
             "re-captures for the threshold of its size.", ""]
    check = decision.extra.get("checked_on")
    if check:
        lines += [f"Checked on photos never used to choose it ({check['photos']}): {check['counterfeit_accepted']} "
                  f"of {check['counterfeit_readable']:,} readable counterfeit photos accepted (95% upper bound "
                  f"{check['upper_bound']:.1e}; their own tail estimates {check['estimated']:.1e} a query), "
                  f"{check['genuine_accepted']:,} of {check['genuine_readable']:,} readable genuine photos accepted.",
                  ""]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
