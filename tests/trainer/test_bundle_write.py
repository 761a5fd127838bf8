"""A new version of a bundle replaces its whole folder: a folder holding files the manifest
does not list (a private key kept beside the model) is refused, and nothing is deleted."""

from pathlib import Path

import pytest

from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, enrolled_bundle
from trainer.bundle_write import BundleUpdate
from trainer.enroll import enroll
from trainer.evaluation import evaluate


def contents(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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
