"""A new bundle version counts up its sequence and stamps its time (what a device's rollback
check reads), keeps or sets its expiry, and a re-export continues the count."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_app.bundle import Release
from edge_app.errors import PufError
from edge_app.runtime import BUNDLE_FORMAT, read_manifest, sha256_file
from trainer.bundle_write import BundleUpdate, replaced_sequence


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
