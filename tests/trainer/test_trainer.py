"""The trainer end to end on a few simulated labels: tiny backbones, few steps.

Asserts behaviour: the loss goes down, held-out genuine pairs score above impostors,
a stopped run resumes from its checkpoint, exports match Keras within the bounds and
run on the device runtime, bad configs are PufErrors.
"""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edge_app.bundle_format import Manifest, read_manifest  # noqa: E402
from edge_app.errors import PufError  # noqa: E402
from edge_app.preprocess import Preprocess, preprocess  # noqa: E402
from edge_app.runtime import ModelRunner  # noqa: E402
from fabrication.patterns import builtin_pattern_set  # noqa: E402
from tests.trainer_support import TINY  # noqa: E402
from trainer.augment import NONE, Augment, augment  # noqa: E402
from trainer.metrics import eer, pair_scores, tar_at_far  # noqa: E402
from trainer.simdata import SimSpec, render_dataset  # noqa: E402

pytest.importorskip("tensorflow")

# Keras 3.x (TF backend) converts variables with np.array(variable) when saving a model,
# which numpy 2 flags because tf.Variable.__array__ takes no `copy` keyword: not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(crops_dir, tmp_path_factory):
    from trainer.train import load_config, train

    run = tmp_path_factory.mktemp("run")
    config = load_config(None, [f"data={crops_dir}", "steps=80", *TINY])
    report = train(config, run, progress=False).to_dict()
    return run, report


def _log(run, kind="train"):
    with (run / "log.csv").open() as f:
        return [row for row in csv.DictReader(f) if row["kind"] == kind]


def test_training_lowers_the_loss_and_separates_held_out_labels(trained):
    run, report = trained
    rows = _log(run)
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.6 * first, (first, last)
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])  # evaluated labels never trained on
    # held-out labels: genuine pairs above impostor pairs
    assert report["genuine_mean"] > report["impostor_mean"] + 0.1
    assert report["eer"] < 0.25
    assert report["step"] == 80


def test_the_train_report_is_typed_and_its_dict_is_the_runs_eval_json(trained):
    from trainer.train import TrainReport

    run, report = trained
    written = json.loads((run / "eval.json").read_text())
    typed = TrainReport.of(written)
    assert typed.step == 80 and typed.optimistic is False and typed.init is None
    assert typed.figures["eer"] == written["eer"] and "step" not in typed.figures
    assert typed.to_dict() == written == report and list(typed.to_dict()) == list(written)
    assert TrainReport.of({}).to_dict() == {}  # stopped before its first validation


def test_a_stopped_run_resumes_from_its_checkpoint(crops_dir, tmp_path):
    from trainer.train import load_config, train

    config = load_config(None, [f"data={crops_dir}", "steps=30", *TINY])
    train(config, tmp_path, progress=False, max_new_steps=20)  # "stopped" after 20
    assert json.loads((tmp_path / "eval.json").read_text())["step"] == 20
    report = train(config, tmp_path, progress=False).to_dict()
    assert report["step"] == 30
    steps = [int(r["step"]) for r in _log(tmp_path)]
    assert steps == [20, 30]  # logged once each: the second call began at step 20
    other = load_config(None, [f"data={crops_dir}", "steps=30", *TINY, "s=20"])
    with pytest.raises(PufError, match="another configuration"):
        train(other, tmp_path, progress=False)


@pytest.mark.parametrize("override, message", [
    ("backbone=vgg", "unknown backbone"),
    ("lr=-1", "learning rate"),
    ("sample_rate=0", None),
    ("no_such_key=1", "unknown config keys"),
    ("preprocess.channel=red", "channel"),
    ("augment.jpeg_p=2", "probability"),
    ("batch_patterns=-1", "batch_patterns"),
    ("per_label=0", "per_label"),
])
def test_bad_configs_are_puf_errors(override, message, crops_dir, tmp_path):
    from trainer.train import load_config, train

    with pytest.raises(PufError, match=message):
        config = load_config(None, [f"data={crops_dir}", "steps=2", *TINY, override])
        train(config, tmp_path, progress=False)


def test_a_shipped_config_is_found_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from trainer.train import load_config

    assert load_config("edge").backbone == "mobile_s"  # trainer/configs/edge.toml, package data in the wheel
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edge").write_text('{"backbone": "resnet18"}')
    assert load_config("edge").backbone == "resnet18"
    with pytest.raises(PufError, match="no config file at nonesuch"):
        load_config("nonesuch")


@pytest.mark.parametrize("text", ['["backbone", "resnet18"]', '"resnet18"', "7", "null"])
def test_a_config_file_that_is_not_a_table_of_keys_is_refused(tmp_path, text):
    from trainer.train import load_config

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(PufError, match="is not a table of keys and values"):
        load_config(tmp_path / "config.json")


def test_partial_fc_samples_every_batch_label_and_renumbers():
    import tensorflow as tf

    from trainer.losses import CombinedMarginLoss

    loss = CombinedMarginLoss(1000, 16, sample_rate=0.05)
    labels = tf.constant([3, 999, 3, 512, 7], tf.int32)
    index, target = loss.sample(labels)
    index, target = index.numpy(), target.numpy()
    assert len(index) == 50 and len(set(index)) == 50
    np.testing.assert_array_equal(index[target], labels.numpy())
    value = loss(tf.random.normal((5, 16)), labels)
    assert np.isfinite(value.numpy()) and value.numpy() > 0


def test_arcface_margin_makes_the_target_harder():
    import tensorflow as tf

    from trainer.losses import CombinedMarginLoss

    emb = tf.random.stateless_normal((8, 16), (1, 2))
    labels = tf.range(8)
    plain = CombinedMarginLoss(8, 16, s=16, m2=0.0, seed=3)
    arc = CombinedMarginLoss(8, 16, s=16, m2=0.5, seed=3)
    assert float(arc(emb, labels)) > float(plain(emb, labels))
    assert float(arc(emb, labels, margin_scale=0.0)) == pytest.approx(float(plain(emb, labels)))


def test_export_matches_keras_and_runs_on_the_device_runtime(trained, tmp_path):
    from trainer.export import INT8_MEAN_COSINE, export
    from trainer.export_record import was_exported

    run, _ = trained
    bundle = tmp_path / "bundle"
    manifest = export(run, bundle, progress=False)
    parity = manifest["parity"]
    assert parity["int8"]["cosine_mean"] >= INT8_MEAN_COSINE
    assert parity["onnx"]["cosine_worst"] >= 0.9999
    assert max(parity["onnx"]["embedding_max_abs"], parity["onnx"]["logits_max_abs"]) <= 1e-3
    assert parity["onnx"]["pattern_agreement"] == 1.0
    assert parity["float"]["pattern_agreement"] == 1.0
    assert manifest["signature"] is None and manifest["shards"] is None
    assert was_exported(read_manifest(bundle))  # what lets its first signing trust it (trainer.export_record)
    assert len(manifest["pattern_classes"]) == 44
    assert read_manifest(bundle)["preprocessing"]["input_size"] == 64
    crop = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    outputs = []
    for fmt in ("int8", "float", "onnx"):
        runner = ModelRunner.from_bundle(bundle, fmt, num_threads=1)
        x = preprocess(crop, runner.preprocess)
        single = runner.run(x)
        batch = runner.run(np.stack([x, x, x]))
        assert single.embedding.shape == (1, 32) and batch.embedding.shape == (3, 32)
        assert np.allclose(np.linalg.norm(batch.embedding, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(batch.embedding[2], single.embedding[0], atol=1e-5)
        assert batch.pattern_probabilities().shape == (3, 44)
        outputs.append(single.embedding[0])
    assert float(outputs[1] @ outputs[2]) > 0.9999
    # a tampered model file is refused, naming the file
    path = bundle / "model.onnx"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(PufError, match="model.onnx"):
        ModelRunner.from_bundle(bundle, "onnx")


def test_metrics_on_known_scores():
    genuine = np.array([0.9, 0.8, 0.7, 0.2])
    impostor = np.linspace(0.0, 0.75, 1000)
    row = tar_at_far(genuine, impostor, 1e-2)
    assert row["measured_far"] <= 1e-2 and row["tar"] == 0.5 and row["resolved"]
    assert not tar_at_far(genuine, impostor, 1e-4)["resolved"]
    rate, _ = eer(np.array([0.9, 0.8]), np.array([0.1, 0.2]))
    assert rate == 0.0
    enroll = np.eye(3, dtype=np.float32)
    gen, imp = pair_scores(enroll, np.array([0, 1, 2]), enroll[[0, 2]], np.array([0, 2]))
    assert gen.tolist() == [1.0, 1.0] and len(imp) == 4 and imp.max() == 0.0


def test_preprocess_masks_the_border_and_cancels_exposure():
    rng = np.random.default_rng(1)
    crop = (rng.random((128, 128, 3)) * 80 + 40).astype(np.uint8)
    params = Preprocess(input_size=112, border_mask_frac=0.1)
    x = preprocess(crop, params)
    assert x.shape == (112, 112, 1) and x.dtype == np.float32
    assert np.all(x[:11] == 0) and np.all(x[:, -11:] == 0) and np.abs(x[20:90, 20:90]).mean() > 0.5
    brighter = np.clip(crop.astype(np.int32) * 2, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(preprocess(brighter, params), x, atol=0.05)
    assert Preprocess.from_dict(params.to_dict()) == params
    with pytest.raises(PufError):
        preprocess(crop.astype(np.float32), params)
    with pytest.raises(PufError):
        Preprocess(channel="red")


def test_augmentation_keeps_the_crop_format_and_none_is_identity():
    rng = np.random.default_rng(2)
    crop = (rng.random((96, 96, 3)) * 255).astype(np.uint8)
    out = augment(crop, Augment(rotation_deg=180), rng)
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert not np.array_equal(out, crop)
    np.testing.assert_array_equal(augment(crop, NONE, rng), crop)
    with pytest.raises(PufError):
        Augment(v_shift_p=1.5)


def test_registry_and_materialized_data_sets_read_like_folders(crops_dir, tmp_path):
    import cv2

    from edge_app.layout import BatchLayout
    from fabrication.registry import FieldRecord, LabelRecord, Registry
    from trainer.data import FolderDataset, materialize, open_dataset

    folder = FolderDataset(crops_dir)
    labels = folder.labels()[:3]
    batch_dir = tmp_path / "T1"
    (batch_dir / "crops").mkdir(parents=True)
    layout = BatchLayout("T1", tuple(folder.pattern[label] for label in labels) + ("A",) * 9,
                         field_cols=1, field_rows=1)
    records = []
    for slot, label in enumerate(labels):
        cv2.imwrite(str(batch_dir / "crops" / f"{label}.png"), cv2.imread(str(folder.crops[label][0])))
        records.append(LabelRecord(label, "T1", 0, slot, 0, slot, "found", folder.pattern[label],
                                   crop_path=f"crops/{label}.png"))
    records.append(LabelRecord("T1-0000-05", "T1", 0, 5, 1, 1, "rejected", "A"))
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.upsert_batch(layout, str(batch_dir))
        registry.record_field(FieldRecord("T1", 0, "done"), records)
    dataset = open_dataset(tmp_path / "registry.sqlite")
    assert dataset.labels() == labels  # the rejected label has no crop
    assert all(len(dataset.crops[label]) == 1 for label in labels)

    written = materialize(tmp_path / "registry.sqlite", tmp_path / "aug", 2, progress=False)
    assert written == 6
    copies = FolderDataset(tmp_path / "aug")
    assert copies.labels() == labels and all(len(copies.crops[label]) == 2 for label in labels)
    assert copies.pattern == {label: folder.pattern[label] for label in labels}


def test_train_and_export_verbs_explain_bad_input(tmp_path, capsys):
    from edge_app.cli import main

    assert main(["export", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run")]) == 2
    assert "no data set" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run"), "--data", str(tmp_path)]) == 2
    assert "labels.csv" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run"), "--set", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_the_shipped_default_model_tells_new_labels_apart(tmp_path):
    """The committed bundle, on labels of a film it never saw, through the device runtime."""
    from edge_app.bundle_format import verify_files
    from edge_app.preprocess import preprocess_batch
    from edge_app.runtime import default_bundle
    from trainer.data import FolderDataset, load_crops

    bundle = default_bundle()
    if not (bundle / "manifest.json").exists():
        pytest.skip("no shipped bundle in this checkout")
    manifest = read_manifest(bundle)
    verify_files(bundle, Manifest.from_dict(manifest))
    render_dataset(tmp_path, [SimSpec("NEW", 9001, 1, 1, microscope_shots=1, handheld_shots=1)],
                   progress=False)
    dataset = FolderDataset(tmp_path)
    crops = load_crops(dataset, dataset.labels(), manifest["pattern_classes"])
    for fmt in ("int8", "onnx"):
        runner = ModelRunner.from_bundle(bundle, fmt)
        out = runner.run(preprocess_batch(crops.images, runner.preprocess))
        is_m = np.array([c.startswith("m") for c in crops.capture])
        enroll, query = out.embedding[is_m], out.embedding[~is_m]
        genuine, impostor = pair_scores(enroll, crops.label[is_m], query, crops.label[~is_m])
        assert genuine.min() > impostor.max(), fmt
        assert genuine.min() > manifest["decision"]["threshold"], fmt  # (set at FAR 1e-3)
        assert np.mean(out.pattern_logits.argmax(1) == crops.pattern) >= 0.9


def test_folder_dataset_reads_crops_named_by_label_id(tmp_path):
    """`puf segment` writes crops/<label_id>.png; a folder of those is a data set too."""
    import cv2
    import numpy as np

    from trainer.data import FolderDataset

    (tmp_path / "crops" / "B1-0000-01").mkdir(parents=True)
    crop = np.full((128, 128, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "crops" / "B1-0000-00.png"), crop)
    cv2.imwrite(str(tmp_path / "crops" / "B1-0000-01" / "m0.png"), crop)
    (tmp_path / "labels.csv").write_text("label_id,batch,pattern\nB1-0000-00,B1,A\nB1-0000-01,B1,C\nB1-0000-02,B1,D\n")
    dataset = FolderDataset(tmp_path)
    assert dataset.crops == {"B1-0000-00": [tmp_path / "crops" / "B1-0000-00.png"],
                             "B1-0000-01": [tmp_path / "crops" / "B1-0000-01" / "m0.png"]}


@pytest.fixture(scope="module")
def one_capture_dir(tmp_path_factory):
    """The paper's recipe: one microscope capture per label, nothing else, named by label
    id as `puf segment` writes crops."""
    import shutil

    root = tmp_path_factory.mktemp("one_capture")
    render_dataset(root, [SimSpec("T2", 6, 3, 1, microscope_shots=1, handheld_shots=1, crop_size=96)],
                   workers=1, progress=False)
    for folder in [p for p in (root / "crops").iterdir() if p.is_dir()]:
        if (folder / "m0.png").exists():
            (folder / "m0.png").rename(root / "crops" / f"{folder.name}.png")
        shutil.rmtree(folder)
    return root


def _verb(verb, argv: list[str]) -> int:
    """Run one of the trainer's verbs as `puf` would (without the installed command's
    other verbs)."""
    import argparse

    parser = argparse.ArgumentParser()
    verb.add_arguments(parser)
    return verb.run(parser.parse_args(argv))


def test_one_capture_per_label_trains_and_says_its_figures_are_optimistic(one_capture_dir, tmp_path, capsys):
    from trainer.data import FolderDataset
    from trainer.verb_export import verb as export
    from trainer.verb_train import verb as train

    dataset = FolderDataset(one_capture_dir)
    assert all(len(paths) == 1 for paths in dataset.crops.values())
    run = tmp_path / "run"
    assert _verb(train, [str(run), "--data", str(one_capture_dir), "--steps", "30",
                         *[a for s in TINY for a in ("--set", s)]]) == 0
    out = capsys.readouterr()
    said = out.out + out.err  # the progress line on stderr, the final print on stdout
    assert said.count("(optimistic: validation queries are augmented copies") == 2
    report = json.loads((run / "eval.json").read_text())
    assert report["optimistic"] is True
    assert report["validation"] == "augmented copies of one capture per label"
    assert report["genuine_pairs"] > 0 and report["step"] == 30
    assert "init" not in report and json.loads((run / "config.json").read_text())["init"] == ""

    # export refuses to call its threshold calibrated, and verify says so
    assert _verb(export, [str(run), "--out", str(tmp_path / "bundle"), "--formats", "onnx"]) == 0
    assert "NOT CALIBRATED: optimistic" in capsys.readouterr().out
    decision = read_manifest(tmp_path / "bundle")["decision"]
    assert decision["calibrated"] is False and decision["optimistic"] is True
    assert "puf evaluate" in decision["not_calibrated_because"]
    from edge_app.bundle import Bundle  # what puf verify and the app warn with

    manifest = Manifest.read(tmp_path / "bundle")
    warning = Bundle(tmp_path / "bundle", manifest, None, None, None).uncalibrated_warning
    assert "is not calibrated (optimistic" in warning
    manifest.decision.calibrated = True  # as puf evaluate writes it
    assert Bundle(tmp_path / "bundle", manifest, None, None, None).uncalibrated_warning is None


def test_validation_with_re_captures_is_not_optimistic(crops_dir):
    from trainer.data import FolderDataset, load_crops
    from trainer.train import Validation

    dataset = FolderDataset(crops_dir)
    crops = load_crops(dataset, dataset.labels()[:4], _patterns())
    validation = Validation(crops, Preprocess(input_size=64))
    assert not validation.optimistic and len(validation.query_id) == 4  # the handheld captures
    # materialized copies of one capture are copies too, not re-captures
    crops.capture = [f"m0_a{i:03d}" for i in range(len(crops))]
    validation = Validation(crops, Preprocess(input_size=64), copies=3)
    assert validation.optimistic and len(validation.query_id) == 3 * 4


def _patterns():
    return builtin_pattern_set().names


def test_init_from_a_run_keeps_the_backbone_and_renews_the_head_for_other_classes(trained, tmp_path):
    import keras

    from trainer.data import FolderDataset, load_crops, preprocess_all
    from trainer.network import build_network
    from trainer.warm_start import read_init, warm_start

    run, _ = trained
    source = read_init(run)
    assert source.kind == "run" and source.pattern_set.names == _patterns()
    original = keras.models.load_model(run / "model.keras", compile=False)
    dataset = FolderDataset(source_data(run))
    crops = load_crops(dataset, dataset.labels()[:3], _patterns())
    inputs = preprocess_all(crops, Preprocess(input_size=64))
    backbone = original.get_layer("mobile_tiny")

    same = build_network("mobile_tiny", (64, 64, 1), 32, 44, 8, 32)
    record = warm_start(same, source, builtin_pattern_set(), inputs)
    assert record["pattern_head"] == "kept" and record["identity_centres"] == "new"
    for got, want in zip(same.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)

    other = builtin_pattern_set().subset(_patterns()[:10])  # a factory's own glyphs: another class list
    fresh = build_network("mobile_tiny", (64, 64, 1), 32, len(other.names), 8, 32)
    before = fresh.get_layer("pattern_fc").get_weights()[0].copy()
    record = warm_start(fresh, source, other, inputs)
    assert record["pattern_head"] == "re-initialised"
    for got, want in zip(fresh.get_layer("mobile_tiny").get_weights(), backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fresh.get_layer("embedding_fc").get_weights()[0],
                                  original.get_layer("embedding_fc").get_weights()[0])
    np.testing.assert_array_equal(fresh.get_layer("pattern_fc").get_weights()[0], before)  # not copied
    emb_new = np.asarray(fresh(inputs, training=False)["embedding"])
    emb_old = np.asarray(original(inputs, training=False)["embedding"])
    np.testing.assert_allclose(emb_new, emb_old, atol=1e-5)


def source_data(run):
    return json.loads((run / "config.json").read_text())["data"]


def test_train_with_init_from_a_run_records_it_and_refuses_another_architecture(trained, one_capture_dir, tmp_path):
    from trainer.train import load_config, train

    run, _ = trained
    config = load_config(None, [f"data={one_capture_dir}", f"init={run}", "steps=3", *TINY])
    report = train(config, tmp_path / "ft", progress=False).to_dict()
    assert report["init"]["from"] == str(run) and report["init"]["kind"] == "run"
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init"] == str(run)
    other = load_config(None, [f"data={one_capture_dir}", f"init={run}", "steps=3", *TINY, "embedding_dim=16"])
    with pytest.raises(PufError, match="embedding_dim 32"):
        train(other, tmp_path / "ft2", progress=False)


def test_training_only_the_pattern_head_keeps_the_fingerprint_exactly(trained, one_capture_dir, tmp_path):
    import keras

    from trainer.train import load_config, train

    run, _ = trained
    config = load_config(None, [f"data={one_capture_dir}", f"init={run}", "train_only=pattern_head", "steps=6",
                                *TINY])
    train(config, tmp_path / "head", progress=False)
    before = keras.models.load_model(run / "model.keras", compile=False)
    after = keras.models.load_model(tmp_path / "head" / "model.keras", compile=False)
    for layer in after.layers:
        if layer.name in ("pattern_fc", "pattern_logits"):
            continue  # the head learned (or was renewed for another set); everything else is the init's
        for got, want in zip(layer.get_weights(), before.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(after.get_layer("pattern_fc").get_weights()[0],
                              before.get_layer("pattern_fc").get_weights()[0])
    with pytest.raises(PufError, match="give --init"):
        load_config(None, [f"data={one_capture_dir}", "train_only=pattern_head", *TINY])


def test_init_from_a_bundle_reads_its_onnx_weights_back_or_refuses(trained, tmp_path):
    import shutil

    from trainer.data import FolderDataset, load_crops, preprocess_all
    from trainer.export import export
    from trainer.network import build_network
    from trainer.warm_start import read_init, warm_start

    run, _ = trained
    bundle = tmp_path / "bundle"
    export(run, bundle, ("onnx",), progress=False)
    source = read_init(bundle)
    assert source.kind == "bundle" and source.architecture["backbone"] == "mobile_tiny"
    dataset = FolderDataset(source_data(run))
    crops = load_crops(dataset, dataset.labels(), _patterns())
    inputs = preprocess_all(crops, Preprocess(input_size=64))
    model = build_network("mobile_tiny", (64, 64, 1), 32, 44, 8, 32)
    record = warm_start(model, source, builtin_pattern_set(), inputs)
    assert record["parity"]["cosine_worst"] >= 0.9999 and record["parity"]["pattern_agreement"] == 1.0
    # the batch norms got the folded scale back from the crops' own statistics: in training
    # mode (batch statistics) the backbone computes what it computes at inference
    body = model.get_layer("mobile_tiny")
    got = np.asarray(body(inputs, training=True)).reshape(len(inputs), -1)
    want = np.asarray(body(inputs, training=False)).reshape(len(inputs), -1)
    cos = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.999, cos

    # a bundle whose ONNX file is another network is refused, saying why
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["config"]["head_channels"] = 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    wide = build_network("mobile_tiny", (64, 64, 1), 32, 44, 16, 32)
    with pytest.raises(PufError, match="no layer matches"):
        warm_start(wide, read_init(other), builtin_pattern_set(), inputs)
    (bundle / "model.onnx").unlink()
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["model.onnx"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PufError, match="no model.onnx"):
        read_init(bundle)
    with pytest.raises(PufError, match="neither a training run"):
        read_init(tmp_path)


def test_init_default_names_the_shipped_bundle_from_anywhere_unless_a_folder_is_called_so(tmp_path, monkeypatch):
    from edge_app.runtime import shipped_bundle
    from trainer.warm_start import read_init

    shipped = ROOT / "models" / "default"
    monkeypatch.chdir(tmp_path)  # no checkout here: the name, not a relative path, finds it
    monkeypatch.setenv("PUF_BUNDLE", str(tmp_path / "device_bundle"))  # the device's bundle is not the shipped one
    source = read_init("default")
    assert source.path == shipped_bundle() == shipped and source.kind == "bundle"
    assert source.architecture == read_init(shipped).architecture
    assert source.architecture["backbone"] == Manifest.read(shipped).model.extra["config"]["backbone"]
    (tmp_path / "default").mkdir()  # a folder of that name here is what the user means: it is read, and refused
    with pytest.raises(PufError, match=r"--init default: neither a training run .* 'default' names the shipped"):
        read_init("default")


def test_a_warm_start_begins_each_label_centre_at_its_mean_embedding(trained, crops_dir, tmp_path):
    import keras

    from trainer.data import load_crops, open_dataset, preprocess_all
    from trainer.train import embed, label_centres, load_config, train

    run, _ = trained
    model = keras.models.load_model(run / "model.keras", compile=False)
    params = Preprocess.from_dict(json.loads((run / "config.json").read_text())["preprocess"])
    dataset = open_dataset(crops_dir)
    crops = load_crops(dataset, dataset.labels(), dataset.pattern_set.names)
    centres = label_centres(model, crops, params, chunk=7)  # chunks that split labels
    embeddings, _ = embed(model, preprocess_all(crops, params))
    means = np.stack([embeddings[crops.label == i].mean(0) for i in range(len(crops.label_ids))])
    np.testing.assert_allclose(centres, means / np.linalg.norm(means, axis=1, keepdims=True), atol=1e-5)
    nearest = (embeddings @ centres.T).argmax(1)
    assert (nearest == crops.label).mean() > 0.8  # the trained model already tells these apart

    config = load_config(None, [f"data={crops_dir}", f"init={run}", "steps=3", "batch_patterns=2", *TINY])
    report = train(config, tmp_path / "ft", progress=False).to_dict()
    # the same labels as the init run: every centre is the one it trained
    assert report["init"]["identity_centres"]["kept"] == len(json.loads((run / "split.json").read_text())["train"])
    assert report["init"]["identity_centres"]["new"] == 0
    assert report["step"] == 3
