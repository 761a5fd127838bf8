"""`puf enroll` on a disk that fills while it writes the new bundle version (templates,
shard index, label ids, thumbnails, manifest; a shard's Faiss index first, into a bundle that
has its templates): a clear error, the old bundle untouched and no half-written version left,
and the re-run on a disk with room enrolls everything."""

import shutil
import subprocess
import sys
from pathlib import Path

from edge_app.bundle_format import read_manifest, sha256_file
from edge_app.cli import main
from tests.bundle_support import enroll_crops, keys
from tests.faults import limited
from tests.trainer_support import subset
from trainer.enroll import enroll

ROOT = Path(__file__).resolve().parents[2]


def _contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _enroll_on_a_small_disk(bundle: Path, labels: Path, key: Path, limit: int, *more: str
                            ) -> subprocess.CompletedProcess:
    """`puf enroll` in a process that cannot write a file past `limit` bytes: its writes fail
    with EFBIG, as on a full disk (SIGXFSZ ignored, so they raise instead of killing it)."""
    code = ("import sys; from edge_app.cli import main; "
            f"sys.exit(main(['enroll', '--bundle', {str(bundle)!r}, '--labels', {str(labels)!r}, "
            f"'--key', {str(key)!r}, *{more!r}]))")
    return subprocess.run(limited([sys.executable, "-c", code], "RLIMIT_FSIZE", limit), cwd=ROOT,
                          capture_output=True, text=True)


def test_a_full_disk_during_enroll_is_a_clear_error_and_loses_nothing(base, fresh, tmp_path):
    labels, key = enroll_crops(base), keys(base)[0]
    probe = Path(shutil.copytree(fresh, tmp_path / "probe"))
    assert main(["enroll", "--bundle", str(probe), "--labels", str(labels), "--key", str(key)]) == 0
    before = _contents(fresh)
    written = sorted({info["bytes"] for name, info in read_manifest(probe)["files"].items()
                      if before.get(name) != info["sha256"]})
    limits = sorted({1000, *(size - 1 for size in written if size > 1000)})  # each file the write fails in
    assert len(limits) >= 3
    beside = sorted(p.name for p in fresh.parent.iterdir())
    for limit in limits:
        done = _enroll_on_a_small_disk(fresh, labels, key, limit)
        assert done.returncode == 2, (limit, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        assert f"cannot write the bundle {fresh}" in done.stderr and "the old version is unchanged" in done.stderr
        assert _contents(fresh) == before
        left = {p.name for p in fresh.parent.iterdir()} - set(beside)
        assert left <= {".bundle.lock"}  # the writers' lock stays; no unfinished version does
    assert main(["enroll", "--bundle", str(fresh), "--labels", str(labels), "--key", str(key), "--json"]) == 0
    assert _contents(fresh).keys() == _contents(probe).keys()
    assert read_manifest(fresh)["shards"]["labels"] == 12


def test_a_full_disk_while_writing_a_faiss_index_is_a_clear_error_and_loses_nothing(base, fresh, key, tmp_path):
    labels = enroll_crops(base)
    enroll(fresh, subset(labels, tmp_path / "first", range(0, 6)), key, progress=False)  # templates written
    before, beside = _contents(fresh), {p.name for p in fresh.parent.iterdir()}
    # the first file written is a shard's index, of 8 vectors a label: larger than the C library's write buffer
    done = _enroll_on_a_small_disk(fresh, labels, keys(base)[0], 200, "--rotations", "8")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"cannot write the bundle {fresh}" in done.stderr and "the old version is unchanged" in done.stderr
    assert _contents(fresh) == before
    assert {p.name for p in fresh.parent.iterdir()} == beside  # no unfinished version left
