"""The fault harness on `puf enroll`: kill -9 it at 20 seeded moments (each killed run is
re-run, and killed again, until one ends), then check what is left against an uninterrupted
run: the bundle verifies (signature, checksums, `load_bundle`) and holds every enrolled label
exactly once, the registry passes ``pragma integrity_check`` and its label statuses are the
uninterrupted run's; no unfinished version is left beside the bundle."""

import shutil
import sqlite3
from collections import Counter
from pathlib import Path

from edge_app.bundle import load_bundle
from edge_app.folder_swap import versions_of
from tests.bundle_support import batch_registry, keys, model_bundle
from tests.faults import kill_moments, puf_command, run_and_kill, timed_run
from tests.trainer_support import bundle_label_counts, statuses

KILLS = 20
SEED = 12


def check_after_kills(bundle: Path, registry: Path, trusted: Path, expected: dict[str, str]) -> None:
    load_bundle(bundle, trusted)  # signed by a trusted key, every file as its manifest says
    enrolled = sorted(label for label, status in expected.items() if status == "enrolled")
    assert bundle_label_counts(bundle) == Counter(enrolled)  # every enrolled label, once
    db = sqlite3.connect(registry)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    assert statuses(registry) == expected
    hidden = {p.name for p in bundle.parent.iterdir() if p.name.startswith(".")}
    assert hidden <= {".bundle.lock", versions_of(bundle).name}  # no unfinished version, no link half-made
    assert bundle.is_symlink() and bundle.resolve().parent == versions_of(bundle)


def test_enroll_killed_at_random_moments_converges_to_an_uninterrupted_run(base, tmp_path):
    private, trusted = keys(base)
    made = 0

    def fresh_site() -> tuple[Path, Path]:
        nonlocal made
        made += 1
        site = tmp_path / f"site{made}"
        site.mkdir()
        return Path(shutil.copytree(model_bundle(base), site / "bundle")), batch_registry(base, site)

    def enroll_command(bundle: Path, registry: Path) -> list[str]:
        return puf_command("enroll", "--bundle", str(bundle), "--labels", str(registry), "--key", str(private))

    log = tmp_path / "enroll.log"
    reference = fresh_site()
    longest = timed_run(enroll_command(*reference), log)
    expected = statuses(reference[1])
    assert Counter(expected.values()) == {"enrolled": 24}

    site, ended = fresh_site(), 0
    for moment in kill_moments(SEED, KILLS, longest):
        code = run_and_kill(enroll_command(*site), moment, log)
        if code is not None:  # it ended before its kill: check it, and go on with a new site
            assert code == 0, log.read_text()[-2000:]
            check_after_kills(*site, trusted, expected)
            site, ended = fresh_site(), ended + 1
    timed_run(enroll_command(*site), log)
    check_after_kills(*site, trusted, expected)
    assert ended < KILLS // 2  # most kills landed inside a run
