"""kill -9 of `puf revoke` and `puf unenroll` at seeded moments: every killed run leaves the
bundle whole (signed by the trusted key, every file as its manifest says), holding the label
or not, never half-way; the run after the kills (which clears what a killed one left
unfinished) ends with the label gone, one sequence up."""

from pathlib import Path

import numpy as np
import pytest

from edge_app.bundle import load_bundle
from edge_app.bundle_format import Manifest
from edge_app.folder_swap import versions_of
from tests.bundle_support import enrolled_bundle, keys, sim_batch
from tests.faults import kill_moments, puf_command, run_and_kill, timed_run

KILLS = 6
SEED = 31


def held_ids(bundle: Path) -> set[str]:
    manifest = Manifest.read(bundle)
    return {i for e in manifest.shards.entries.values() for i in np.load(bundle / e.ids).astype(str)}


@pytest.mark.parametrize("verb", ["revoke", "unenroll"])
def test_a_removal_killed_at_random_moments_leaves_the_bundle_whole_and_converges(base, tmp_path, verb):
    private, trusted = keys(base)
    gone = sim_batch().layout.label_id(0, 5)

    def command(bundle: Path) -> list[str]:
        chosen = [gone] if verb == "revoke" else ["--label", gone]
        return puf_command(verb, *chosen, "--bundle", str(bundle), "--key", str(private))

    log = tmp_path / f"{verb}.log"
    reference = enrolled_bundle(base, tmp_path / "reference" / "bundle")
    before = Manifest.read(reference).release.sequence
    longest = timed_run(command(reference), log)
    bundle = enrolled_bundle(base, tmp_path / "killed" / "bundle")
    for moment in kill_moments(SEED, KILLS, longest):
        code = run_and_kill(command(bundle), moment, log)
        loaded = load_bundle(bundle, trusted)  # whole, and signed by the trusted key
        assert loaded.release.sequence in (before, before + 1)
        assert (gone in held_ids(bundle)) == (loaded.release.sequence == before)  # old or new, never between
        if code is not None or gone not in held_ids(bundle):
            break
    else:
        timed_run(command(bundle), log)
    after = load_bundle(bundle, trusted)
    assert gone not in held_ids(bundle) and after.release.sequence == before + 1
    assert held_ids(bundle) == held_ids(reference)
    hidden = {p.name for p in bundle.parent.iterdir() if p.name.startswith(".")}
    assert hidden <= {".bundle.lock", versions_of(bundle).name}  # a killed run's unfinished version cleared
    if verb == "revoke":
        assert gone in after.revoked.listing.label_ids
