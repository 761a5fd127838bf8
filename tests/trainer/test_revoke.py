"""Revoking labels (`puf revoke`): a device says "revoked" for a revoked label's photos, and the
revocation survives a later enrollment of the same labels; what would abuse the list is refused."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_app.bundle_format import Manifest
from tests.bundle_support import enroll_crops, enrolled_bundle, keys, sim_batch
from tests.store_support import OTHER, SLOT, label, main, revoke, verdict


def enrolled_ids(bundle: Path) -> set[str]:
    manifest = Manifest.read(bundle)
    return {i for e in manifest.shards.entries.values() for i in np.load(bundle / e.ids).astype(str)}


@pytest.fixture
def revoked(base, tmp_path, capsys) -> Path:
    bundle = enrolled_bundle(base, tmp_path / "bundle")
    status, report = revoke(base, bundle, capsys, label(SLOT), "--reason", "stolen shipment")
    assert status == 0 and report["revoked"] == [label(SLOT)] and report["list_version"] == 1
    return bundle


def test_a_revoked_labels_photo_is_revoked_not_never_made(base, tmp_path, capsys):
    bundle = enrolled_bundle(base, tmp_path / "bundle")
    assert verdict(base, bundle, tmp_path, SLOT, capsys)[1]["verdict"] == "genuine"
    before = Manifest.read(bundle).release.sequence
    status, report = revoke(base, bundle, capsys, label(SLOT), "--reason", "stolen shipment")
    assert status == 0 and report["sequence"] == before + 1
    assert label(SLOT) not in enrolled_ids(bundle) and len(enrolled_ids(bundle)) == 11
    status, found = verdict(base, bundle, tmp_path, SLOT, capsys)
    assert status == 1 and found["verdict"] == "revoked" and found["label_id"] == label(SLOT)
    assert "stolen shipment" in found["reason"] and found["score"] >= found["threshold"]
    assert verdict(base, bundle, tmp_path, OTHER, capsys)[1]["verdict"] == "genuine"
    listed = json.loads((bundle / "revoked.json").read_text())
    assert [e["label_id"] for e in listed["entries"]] == [label(SLOT)] and listed["version"] == 1


def test_a_label_of_another_film_is_still_counterfeit_not_revoked(base, revoked, tmp_path, capsys):
    for slot in range(12):
        status, found = verdict(base, revoked, tmp_path, slot, capsys, field=1)  # never enrolled
        assert found["verdict"] in ("counterfeit", "unreadable"), found


def test_the_revocation_survives_a_later_enrollment_of_the_same_labels(base, revoked, tmp_path, capsys):
    capsys.readouterr()
    assert main(["enroll", "--bundle", str(revoked), "--labels", str(enroll_crops(base)),
                 "--key", str(keys(base)[0]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels_added"] == 0 and report["skipped"] == {"already enrolled": 11, "revoked": 1}
    assert report["skipped_examples"]["revoked"] == label(SLOT)
    assert label(SLOT) not in enrolled_ids(revoked)
    assert verdict(base, revoked, tmp_path, SLOT, capsys)[1]["verdict"] == "revoked"


def test_revoking_again_changes_nothing_and_a_list_file_adds_to_it(base, revoked, tmp_path, capsys):
    sequence = Manifest.read(revoked).release.sequence
    status, report = revoke(base, revoked, capsys, label(SLOT))
    assert status == 0 and report["revoked"] == [] and report["already_revoked"] == [label(SLOT)]
    assert Manifest.read(revoked).release.sequence == sequence
    (tmp_path / "recalled.txt").write_text(f"# recall 12\n{label(1)}\n\n{label(2)}  # and this one\n")
    status, report = revoke(base, revoked, capsys, "--from", str(tmp_path / "recalled.txt"))
    assert status == 0 and report["revoked"] == [label(1), label(2)] and report["list_version"] == 2
    assert verdict(base, revoked, tmp_path, 2, capsys)[1]["verdict"] == "revoked"
    assert verdict(base, revoked, tmp_path, SLOT, capsys)[1]["verdict"] == "revoked"


@pytest.mark.parametrize("argv, message", [
    (["B9-0000-00"], "label B9-0000-00 is not enrolled in the bundle"),
    (["../x"], "label id '../x' is not allowed"),
    ([], "give the labels to revoke"),
    (["--reason", "two\nlines", "V1-0000-01"], "one line of 1 to"),
])
def test_what_cannot_be_revoked_is_refused_and_nothing_is_written(base, tmp_path, capsys, argv, message):
    bundle = enrolled_bundle(base, tmp_path / "bundle")
    before = (bundle / "manifest.json").read_bytes()
    status, err = revoke(base, bundle, capsys, *argv)
    assert status == 2 and message in err
    assert (bundle / "manifest.json").read_bytes() == before and not (bundle / "revoked.json").exists()



def test_a_revoked_label_leaves_a_shard_it_shared_whose_other_label_and_thumbnail_stay(base, fresh, key, tmp_path,
                                                                                      capsys):
    from edge_app.thumbnails import Thumbnails
    from tests.bundle_support import write_crop_folder
    from trainer.enroll import EnrollOptions, enroll

    layout = sim_batch().layout
    shares = layout.label_id(1, 10)  # field 1's label of the revoked label's pattern
    assert layout.pattern_of(1, 10) == layout.pattern_of(0, SLOT)
    for crops in (enroll_crops(base), write_crop_folder(tmp_path / "f1", sim_batch(), (1,))):
        enroll(fresh, crops, key, EnrollOptions(thumbnails=32), progress=False)
    kept = {i: Thumbnails.open(fresh).get(i) for i in (shares, label(OTHER))}
    status, report = revoke(base, fresh, capsys, label(SLOT), "--reason", "recalled")
    assert status == 0 and report["patterns"] == {label(SLOT): layout.pattern_of(0, SLOT)}
    assert enrolled_ids(fresh) == {layout.label_id(f, s) for f in (0, 1) for s in range(12)} - {label(SLOT)}
    thumbnails = Thumbnails.open(fresh)
    assert len(thumbnails) == 23 and thumbnails.get(label(SLOT)) is None
    assert all(np.array_equal(thumbnails.get(i), kept[i]) for i in kept)
    assert verdict(base, fresh, tmp_path, 10, capsys, field=1)[1]["verdict"] == "genuine"
    status, found = verdict(base, fresh, tmp_path, SLOT, capsys)
    assert status == 1 and found["verdict"] == "revoked"
