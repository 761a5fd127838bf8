"""A crash between the two renames that swap a new bundle version into place leaves no bundle
at its path but the old version aside (`edge_app.folder_swap`): the next factory verb
(enroll, verify) puts it back, under the writers' lock. And `puf export` takes that lock too."""

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import pytest

from edge_app.bundle_format import read_manifest
from edge_app.cli import main
from edge_app.errors import PufError
from edge_app.folder_lock import exclusive
from edge_app.folder_swap import BRIEF_HOLD_SECONDS, aside_of
from tests.bundle_support import enroll_crops, enrolled_bundle, keys, sim_batch
from trainer.bundle_write import bundle_lock, lock_path, new_version_dir
from trainer.enroll import enroll
from trainer.export import export


def crash_between_renames(bundle: Path) -> Path:
    """The state a crash between `replace_dir`'s two renames leaves: the old version renamed
    aside and nothing at `bundle`, the new version still in its temporary folder beside it."""
    new = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", dir=bundle.parent))
    shutil.copytree(bundle, new, dirs_exist_ok=True)
    (new / "manifest.json").write_text("{}")  # unfinished: never to be taken for the bundle
    os.replace(bundle, aside_of(bundle))
    return new


@pytest.fixture
def crashed(base, tmp_path) -> Path:
    bundle = enrolled_bundle(base, tmp_path / "site" / "bundle")
    crash_between_renames(bundle)
    assert not bundle.exists()
    return bundle


def test_verify_finds_the_bundle_a_crash_left_aside(base, crashed, tmp_path, capsys):
    image, truth = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "genuine.jpg"), image)
    args = ["verify", str(tmp_path / "genuine.jpg"), "--bundle", str(crashed), "--trusted-keys", str(keys(base)[1]),
            "--json"]
    assert main(args) == 0
    [verdict] = json.loads(capsys.readouterr().out)["verdicts"]
    assert verdict["verdict"] == "genuine" and verdict["label_id"] == truth["label_id"]
    assert crashed.is_dir() and not aside_of(crashed).exists()


def test_verify_waits_for_a_writer_in_the_middle_of_its_swap(base, crashed, tmp_path, capsys):
    image, _ = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "photo.jpg"), image)
    with exclusive(lock_path(crashed), "a writer"):
        assert main(["verify", str(tmp_path / "photo.jpg"), "--bundle", str(crashed),
                     "--trusted-keys", str(keys(base)[1])]) == 2
    assert "in use by another process" in capsys.readouterr().err
    assert aside_of(crashed).is_dir() and not crashed.exists()  # left for the writer to finish


def test_enroll_builds_on_the_bundle_a_crash_left_aside(base, crashed, key):
    old = read_manifest(aside_of(crashed))
    report = enroll(crashed, enroll_crops(base), key, progress=False)
    new = read_manifest(crashed)
    assert report.labels_added == 0 and report.skipped == {"already enrolled": 12}
    assert new["shards"]["labels"] == 12 and new["sequence"] == old["sequence"] + 1
    assert not aside_of(crashed).exists()


def test_enroll_removes_the_unfinished_versions_killed_writers_left_beside_the_bundle(base, tmp_path, key):
    bundle = enrolled_bundle(base, tmp_path / "site" / "bundle")
    unfinished = new_version_dir(bundle)
    (unfinished / "model_int8.tflite").write_bytes(b"half")
    other = new_version_dir(tmp_path / "site" / "bundle.new-x")  # another bundle's, being written
    enroll(bundle, enroll_crops(base), key, progress=False)
    assert not unfinished.exists() and other.is_dir()


def test_export_over_a_bundle_being_written_is_refused(tmp_path):
    out = tmp_path / "bundle"
    with exclusive(lock_path(out), "a writer"), pytest.raises(PufError, match="bundle .* is in use by another"):
        export(tmp_path / "run", out, progress=False)
    assert main(["export", str(tmp_path / "run"), "--out", str(out)]) == 2  # free again: the run is what is missing


def _hold(lock: str, seconds: float, held) -> None:
    """Child process: hold `lock` for `seconds`, as a reader checking a cut swap does."""
    with exclusive(Path(lock), "a reader"):
        held.set()
        time.sleep(seconds)


def test_a_writer_waits_out_a_readers_brief_hold_of_the_lock(base, tmp_path):
    """The race a reader's check of a swap that looked cut in half opens: it holds the writers'
    lock for a moment just as the next writer comes; that writer waits, where it once failed."""
    bundle = enrolled_bundle(base, tmp_path / "bundle")
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    reader = context.Process(target=_hold, args=(str(lock_path(bundle)), 0.5, held))
    reader.start()
    try:
        assert held.wait(60)
        with bundle_lock(bundle):  # waits for the reader's half second: no PufError
            pass
    finally:
        reader.join()
    assert reader.exitcode == 0
    held.clear()
    reader = context.Process(target=_hold, args=(str(lock_path(bundle)), 3 * BRIEF_HOLD_SECONDS, held))
    reader.start()
    try:
        assert held.wait(60)
        with pytest.raises(PufError, match="in use by another process"), bundle_lock(bundle):
            pass  # a hold longer than a reader's moment is a writer: refused
    finally:
        reader.join()
