"""A new bundle version counts up its sequence and stamps its time (what a device's rollback
check reads), keeps or sets its expiry, and a re-export continues the count. A new version
replaces its whole folder: a folder holding files the manifest does not list (a private key
kept beside the model) is refused, and nothing is deleted."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_app.bundle_format import BUNDLE_FORMAT, Release, read_manifest, sha256_file
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, enrolled_bundle
from trainer.bundle_write import BundleUpdate, lock_path, replaced_sequence
from trainer.enroll import enroll
from trainer.evaluation import evaluate


def _bundle(path: Path, **fields) -> Path:
    path.mkdir()
    (path / "model_int8.tflite").write_bytes(b"model")
    files = {"model_int8.tflite": {"sha256": sha256_file(path / "model_int8.tflite"), "bytes": 5}}
    (path / "manifest.json").write_text(json.dumps({"format_version": BUNDLE_FORMAT, "files": files,
                                                          "signature": None, **fields}))
    return path


def _commit(bundle: Path, valid_days: float | None = None) -> Release:
    with BundleUpdate(bundle) as update:
        update.path_for("note.txt").write_text("x")
        update.commit(valid_days=valid_days)
    return Release.of(read_manifest(bundle))


def test_each_version_raises_the_sequence_and_stamps_its_time(tmp_path):
    bundle = _bundle(tmp_path / "b")  # as puf export writes it before this issue: no sequence (0)
    first = _commit(bundle)
    assert first.sequence == 1 and first.expires is None
    assert timedelta(0) <= datetime.now(UTC) - first.created < timedelta(minutes=5)
    assert _commit(bundle).sequence == 2


def test_an_expiry_is_set_by_valid_days_and_kept_by_later_versions(tmp_path):
    bundle = _bundle(tmp_path / "b", sequence=6)
    release = _commit(bundle, valid_days=30)
    assert release.sequence == 7
    assert timedelta(days=29) < release.expires - datetime.now(UTC) <= timedelta(days=30)
    assert _commit(bundle).expires == release.expires  # re-signing never silently extends it
    for days in (0, -1, float("inf"), float("nan")):
        with pytest.raises(PufError, match="validity must be more than 0"):
            _commit(bundle, valid_days=days)
    assert Release.of(read_manifest(bundle)).sequence == 8  # a refused version changed nothing


def test_a_re_export_continues_the_sequence_of_the_bundle_it_replaces(tmp_path):
    assert replaced_sequence(tmp_path / "none") == 0
    assert replaced_sequence(_bundle(tmp_path / "b", sequence=41)) == 41
    assert replaced_sequence(_bundle(tmp_path / "bad", sequence="x")) == 0


def contents(folder: Path) -> dict:
    """Every file under `folder` but the lock file of its bundle (kept beside it: `bundle_write.bundle_lock`)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p != lock_path(folder / "bundle")}


@pytest.fixture
def crowded(base, tmp_path) -> Path:
    """An enrolled, signed bundle whose folder also holds files that are not the bundle's."""
    bundle = enrolled_bundle(base, tmp_path / "site" / "bundle")
    (bundle / "factory.key").write_text("the factory's private key")
    (bundle / "shards" / "notes.txt").write_text("an operator's notes")
    return bundle


def test_enroll_refuses_a_bundle_folder_with_files_it_does_not_list_and_deletes_nothing(base, crowded, key):
    before = contents(crowded.parent)
    with pytest.raises(PufError, match="holds 2 file.*does not list, e.g. factory.key.*would delete them"):
        enroll(crowded, enroll_crops(base), key, progress=False)
    with pytest.raises(PufError, match="e.g. factory.key"):
        enroll(crowded, enroll_crops(base), progress=False)  # unsigned too: the folder is replaced all the same
    assert contents(crowded.parent) == before


def test_evaluate_refuses_to_write_into_a_crowded_bundle_folder(base, crowded, key):
    before = contents(crowded.parent)
    with pytest.raises(PufError, match="e.g. factory.key"):
        evaluate(crowded, [enroll_crops(base)], far=2e-2, private_key=key, progress=False)
    assert contents(crowded.parent) == before


def test_a_bundle_update_never_starts_over_files_it_did_not_write(crowded):
    before = contents(crowded.parent)
    with pytest.raises(PufError, match="e.g. factory.key"):
        BundleUpdate(crowded)
    assert contents(crowded.parent) == before  # not even a temporary folder beside it
