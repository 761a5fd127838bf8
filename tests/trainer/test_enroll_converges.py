"""A `puf enroll` cut off after its new bundle version is in place but before the registry
records the labels enrolled (a crash, a full disk): the re-run records them, enrolling none
twice, so the registry and the bundle agree."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

from edge_app.bundle_format import read_manifest
from edge_app.cli import main
from fabrication.registry import Registry
from tests.bundle_support import batch_registry, keys
from tests.trainer_support import bundle_label_counts, statuses
from trainer.enroll import bundle_name, enroll

ROOT = Path(__file__).resolve().parents[2]


def test_a_rerun_after_a_crash_between_the_swap_and_the_registry_update_converges(base, fresh, key, tmp_path):
    registry_path = batch_registry(base, tmp_path, ("V1",))
    enroll(fresh, registry_path, key, progress=False)
    with Registry(registry_path) as registry:  # as the crash left it: in the bundle, not yet recorded
        registry.record_removed(bundle_name(fresh), list(statuses(registry_path)))
    assert set(statuses(registry_path).values()) == {"found"}
    report = enroll(fresh, registry_path, key, progress=False)
    assert report.labels_added == 0 and report.skipped == {"already enrolled": 12}
    assert set(statuses(registry_path).values()) == {"enrolled"}
    with Registry(registry_path) as registry:
        assert registry.enrolled_in(bundle_name(fresh)) == set(statuses(registry_path))
    assert bundle_label_counts(fresh) == Counter(list(statuses(registry_path)))  # each label once


def test_a_full_disk_at_the_registry_update_is_a_clear_error_and_the_rerun_converges(base, fresh, tmp_path):
    registry_path, key = batch_registry(base, tmp_path, ("V1",)), keys(base)[0]
    args = ["enroll", "--bundle", str(fresh), "--labels", str(registry_path), "--key", str(key)]
    # the disk fills once the new bundle version is in place, as the registry records the labels enrolled
    code = ("import resource, signal, sys\n"
            "from edge_app.cli import main\n"
            "from fabrication.registry import Registry\n"
            "record_enrolled = Registry.record_enrolled\n"
            "def fill_then_set(registry, *args):\n"
            "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "    return record_enrolled(registry, *args)\n"
            "Registry.record_enrolled = fill_then_set\n"
            f"sys.exit(main({args!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "could not record as enrolled" in done.stderr
    assert "disk I/O error" in done.stderr  # sqlite's words for EFBIG
    assert "run puf enroll again" in done.stderr
    assert read_manifest(fresh)["shards"]["labels"] == 12
    assert set(statuses(registry_path).values()) == {"found"}
    assert main(args) == 0
    assert set(statuses(registry_path).values()) == {"enrolled"}
    assert bundle_label_counts(fresh) == Counter(list(statuses(registry_path)))
