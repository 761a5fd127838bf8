"""`puf train` on a registry that grows: a second batch segmented into it after a run, labels
held out for calibration, and `--batch` to choose what trains (issue 23.6)."""

import json
import shutil

import pytest

pytest.importorskip("tensorflow")

from edge_app.cli import main as puf  # noqa: E402
from fabrication.registry import FieldRecord, LabelRecord, Registry  # noqa: E402
from tests.bundle_support import batch_registry, sim_batch  # noqa: E402
from tests.trainer_support import TINY  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def add_batch(registry_path, batch_id: str, status: str = "found") -> list[str]:
    """A second batch's 12 labels segmented into the registry (crops copied from the first's)."""
    layout = sim_batch(batch_id).layout
    v1 = sim_batch().layout
    folder = registry_path.parent / batch_id
    (folder / "crops").mkdir(parents=True)
    labels = []
    for slot in range(12):
        label_id = layout.label_id(0, slot)
        shutil.copy(registry_path.parent / "V1" / "crops" / f"{v1.label_id(0, slot)}.png",
                    folder / "crops" / f"{label_id}.png")
        labels.append(LabelRecord(label_id, batch_id, 0, slot, *divmod(slot, 4), status, v1.pattern_of(0, slot),
                                  crop_path=f"crops/{label_id}.png"))
    with Registry(registry_path) as registry:
        registry.upsert_batch(layout, str(folder))
        registry.record_field(FieldRecord(batch_id, 0, "done"), labels)
    return [label.label_id for label in labels]


def train(run, registry, *extra: str) -> list[str]:
    settings = [item for pair in (("--set", s) for s in [*TINY, "val_frac=0.5"]) for item in pair]
    return ["train", str(run), "--data", str(registry), "--steps", "2", *settings, *extra]


def trained_ids(run) -> set[str]:
    split = json.loads((run / "split.json").read_text())
    return set(split["train"]) | set(split["val"])


@pytest.fixture
def registry(base, tmp_path):
    return batch_registry(base, tmp_path, ("V1",))


def test_a_run_resumed_on_a_grown_registry_refuses_and_a_warm_start_grows_the_centres(registry, tmp_path, capsys):
    run = tmp_path / "run"
    assert puf(train(run, registry)) == 0
    first = trained_ids(run)
    new = add_batch(registry, "V3")
    capsys.readouterr()
    # the same command again: the run's labels changed under it; a clear refusal, no traceback
    assert puf([*train(run, registry), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "puf train: error:" in err and "Traceback" not in err
    assert "V3" in err and "--init" in err and "--batch" in err
    # resuming on the batch it had works
    assert puf([*train(run, registry), "--steps", "4", "--batch", "V1"]) == 0
    assert trained_ids(run) == first
    # a new run from this one's weights trains on both batches: the centres it knew are kept
    grown = tmp_path / "grown"
    capsys.readouterr()
    assert puf([*train(grown, registry), "--init", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert trained_ids(grown) == first | set(new)
    centres = report["init"]["identity_centres"]
    known = set(json.loads((run / "split.json").read_text())["train"])
    training = set(json.loads((grown / "split.json").read_text())["train"])
    assert centres == {"kept": len(known), "new": len(training - known),
                       "new_from": "each label's mean embedding under the init model"}


def test_held_out_labels_never_train_unless_asked_and_batch_chooses(registry, tmp_path, capsys):
    held = add_batch(registry, "V3", status="held_out")
    run = tmp_path / "run"
    assert puf(train(run, registry)) == 0
    assert not trained_ids(run) & set(held)
    assert puf(train(tmp_path / "all", registry, "--train-held-out")) == 0
    assert set(held) <= trained_ids(tmp_path / "all")
    assert puf(train(tmp_path / "v2", registry, "--batch", "V3", "--train-held-out")) == 0
    assert trained_ids(tmp_path / "v2") == set(held)
    capsys.readouterr()
    assert puf(train(tmp_path / "none", registry, "--batch", "V9")) == 2
    err = capsys.readouterr().err
    assert "V9" in err and "V1" in err and "Traceback" not in err
    assert puf(train(tmp_path / "held", registry, "--batch", "V3")) == 2  # only held-out labels in it
    assert "held out" in capsys.readouterr().err
    # the paper's copies on disk no longer say which labels were held out: none are copied
    assert puf(["train", str(tmp_path / "aug"), "--data", str(registry), "--materialize", "1"]) == 0
    copied = (tmp_path / "aug" / "labels.csv").read_text()
    assert "V1-" in copied and not [label for label in held if label in copied]


def test_a_run_prints_no_tensorflow_start_up_chatter(registry, tmp_path):
    """The user's `puf train` in its own process: TensorFlow's start-up lines (printed twice,
    once by each of its libraries) are gone, the run's own progress is not."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "edge_app.cli", *train(tmp_path / "run", registry)], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr
    assert "step 2: val TAR" in done.stderr and "step 2: TAR" in done.stdout
