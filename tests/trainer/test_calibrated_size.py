"""A threshold holds for the shard size it was calibrated at (`Decision.labels_per_shard`): a
counterfeit is compared with every label of its pattern's shard, so a larger shard accepts
counterfeits more often. An enrollment that grows a shard past that size marks the threshold
not calibrated, so the device warns, instead of keeping a promise the threshold no longer keeps."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from edge_app.bundle import load_bundle
from edge_app.bundle_format import Decision, Manifest
from tests.bundle_support import keys, sim_batch, write_crop_folder
from trainer.enroll import EnrollOptions, check_calibrated_size, enroll
from trainer.export_record import record_export


def calibrate(bundle: Path, labels_per_shard: int, vectors_per_shard: int | None = None,
              checked_sizes: list[dict] | None = None) -> None:
    """Give the unsigned bundle a calibrated threshold, set for `labels_per_shard` labels (and
    `vectors_per_shard` vectors) a shard, as `puf export` of a calibrated model would (so
    `puf enroll` may sign it)."""
    manifest = Manifest.read(bundle)
    manifest.decision = dataclasses.replace(manifest.decision or Decision(), threshold=0.8, calibrated=True,
                                            labels_per_shard=labels_per_shard, vectors_per_shard=vectors_per_shard,
                                            checked_sizes=checked_sizes)
    manifest.write(bundle)
    record_export(json.loads((bundle / "manifest.json").read_text()), bundle)


def two_fields(base: Path) -> Path:
    """Microscope captures of fields 0 and 1: two labels of each pattern."""
    folder = base / "two_fields_crops"
    return folder if folder.exists() else write_crop_folder(folder, sim_batch(), (0, 1))


def test_a_shard_past_the_calibrated_size_marks_the_threshold_not_calibrated(base, fresh):
    labels = two_fields(base)
    calibrate(fresh, 10**6)
    report = enroll(Path(fresh), labels, progress=False)
    largest = max(e["labels"] for e in report.shards.values())
    assert largest >= 2
    assert report.oversized_shards is None and Manifest.read(fresh).decision.calibrated

    calibrate(fresh, largest)  # exactly the largest shard: still holds
    assert check_calibrated_size(Manifest.read(fresh), report.shards) is None

    calibrate(fresh, largest - 1)  # one label fewer than the largest shard holds
    manifest = Manifest.read(fresh)
    why = check_calibrated_size(manifest, report.shards)
    assert why is not None and f"more than the {largest - 1:,} a shard" in why and "puf evaluate --query-far" in why
    assert manifest.decision.calibrated is False and manifest.decision.extra["not_calibrated_because"] == why


def test_more_copies_of_each_label_than_calibrated_mark_it_too(base, fresh):
    """The same labels in more enrolled copies (`--augmented`) give a counterfeit more vectors to
    clear the threshold with: at 100 copies a label the paper's database accepted 1 of 59,725
    counterfeit photos at the threshold set for one copy, none at one copy."""
    labels = two_fields(base)
    calibrate(fresh, 10**6, 10**6)
    report = enroll(Path(fresh), labels, options=EnrollOptions(augmented=3), progress=False)
    most_labels = max(e["labels"] for e in report.shards.values())
    most_vectors = max(e["vectors"] for e in report.shards.values())
    assert most_vectors == 3 * most_labels and report.oversized_shards is None

    calibrate(fresh, most_labels, most_vectors)  # the labels and their copies as calibrated: still holds
    assert check_calibrated_size(Manifest.read(fresh), report.shards) is None

    calibrate(fresh, most_labels, most_vectors - 1)  # as many labels, in more copies than calibrated
    manifest = Manifest.read(fresh)
    why = check_calibrated_size(manifest, report.shards)
    assert why is not None and f"holds {most_vectors:,} vectors" in why
    assert f"more than the {most_vectors - 1:,} a shard" in why
    assert manifest.decision.calibrated is False and manifest.decision.extra["not_calibrated_because"] == why


def test_a_size_the_threshold_was_also_checked_at_keeps_it_and_no_mix_of_the_two(base, fresh):
    """A threshold calibrated for few labels in many copies (the paper's 944 x 100) and checked at
    many labels of one copy (a million labels' 22,727 x 1) holds for shards within either size,
    not for many labels in many copies, which neither run measured."""
    labels = two_fields(base)
    calibrate(fresh, 10**6, 10**6)
    report = enroll(Path(fresh), labels, options=EnrollOptions(augmented=3), progress=False)
    most_labels = max(e["labels"] for e in report.shards.values())
    most_vectors = max(e["vectors"] for e in report.shards.values())
    assert most_labels >= 2

    # calibrated for fewer labels (in copies), checked at as many labels in their three copies: holds
    calibrate(fresh, 1, 100, [{"labels": most_labels, "vectors": most_vectors, "counterfeit_accepted": 0}])
    assert check_calibrated_size(Manifest.read(fresh), report.shards) is None

    # checked at as many labels but one vector each: these shards' copies are outside both sizes
    calibrate(fresh, 1, 100, [{"labels": most_labels, "vectors": most_labels}])
    manifest = Manifest.read(fresh)
    why = check_calibrated_size(manifest, report.shards)
    assert why is not None and "more than the 1 a shard" in why
    assert f"checked at: {most_labels:,} labels and {most_labels:,} vectors a shard" in why
    assert manifest.decision.calibrated is False


def test_puf_enroll_says_so_and_the_device_warns(base, fresh):
    key, trusted = keys(base)
    calibrate(fresh, 1)
    done = subprocess.run([str(Path(sys.executable).parent / "puf"), "enroll", "--bundle", str(fresh), "--labels",
                           str(two_fields(base)), "--key", str(key)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "NOT CALIBRATED: shard " in done.stdout and "more than the 1 a shard" in done.stdout
    warning = load_bundle(fresh, trusted).uncalibrated_warning
    assert warning is not None and "more than the 1 a shard" in warning
