"""Two `puf enroll` into one bundle at once, in two real processes: the bundle lock lets one
write and stops the other with a clear message, so no batch is lost and the registry
matches the bundle."""

import multiprocessing
import time
from pathlib import Path

from edge_app.bundle import load_bundle
from edge_app.bundle_format import Manifest, read_manifest
from fabrication.registry import Registry
from tests.bundle_support import batch_registry, keys
from trainer.enroll import enrolled_label_ids


def _enroll_batch(bundle: Path, registry: Path, key: Path, batch: str, arrived, go, results) -> None:
    """Child process: enroll one batch, pausing once its labels are read (the other process
    has had the chance to read the same bundle version) until the test says go."""
    import trainer.enroll as enrollment
    from edge_app.errors import PufError
    from trainer.keys import load_private_key

    embed = enrollment.embed_items

    def embed_after_both_read(*args, **kwargs):
        arrived.set()
        go.wait(300)
        return embed(*args, **kwargs)

    enrollment.embed_items = embed_after_both_read
    try:
        report = enrollment.enroll(bundle, registry, load_private_key(key), batches=(batch,), progress=False)
        results.put((batch, "enrolled", report.labels_added))
    except PufError as error:
        results.put((batch, "refused", str(error)))


def _enroll_at_once(base, paths: dict[str, Path], registry_path: Path) -> dict[str, tuple[str, object]]:
    """Enroll batch -> through bundle path, in one process each, both past reading the bundle
    before either goes on; returns batch -> ("enrolled", labels added) or ("refused", message)."""
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    arrived = {batch: context.Event() for batch in paths}
    workers = {batch: context.Process(target=_enroll_batch, args=(paths[batch], registry_path, keys(base)[0], batch,
                                                                   arrived[batch], go, results))
               for batch in arrived}
    for worker in workers.values():
        worker.start()
    deadline = time.monotonic() + 300  # a safety net only: each process reaches its pause or ends
    while time.monotonic() < deadline and not all(arrived[b].is_set() or not w.is_alive() for b, w in workers.items()):
        time.sleep(0.05)
    go.set()
    outcomes = {}
    for _ in workers:
        batch, outcome, detail = results.get(timeout=300)
        outcomes[batch] = (outcome, detail)
    for worker in workers.values():
        worker.join(60)
        assert worker.exitcode == 0
    return outcomes


def test_two_enrollments_at_once_lose_no_batch(base, fresh, tmp_path):
    registry_path = batch_registry(base, tmp_path)
    outcomes = _enroll_at_once(base, {"V1": fresh, "V2": fresh}, registry_path)
    check_one_bundle(base, fresh, registry_path, outcomes)


def test_a_symlink_to_the_bundle_is_locked_as_the_bundle(base, fresh, tmp_path):
    """One enrollment through the bundle's path, one through a symlink to it: the same bundle,
    the same lock (`edge_app.folder_swap.home_of`), so one of them is refused, never two
    bundles each holding one batch."""
    registry_path = batch_registry(base, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(fresh)
    outcomes = _enroll_at_once(base, {"V1": fresh, "V2": link}, registry_path)
    assert sorted(outcome for outcome, _ in outcomes.values()) == ["enrolled", "refused"], outcomes
    check_one_bundle(base, fresh, registry_path, outcomes)
    assert link.is_symlink() and link.resolve() == fresh.resolve()  # still a link to the one bundle


def check_one_bundle(base, fresh: Path, registry_path: Path, outcomes: dict[str, tuple[str, object]]) -> None:
    """The bundle holds each label of the enrolled batches once, and the registry agrees."""
    enrolled_batches = {b for b, (outcome, _) in outcomes.items() if outcome == "enrolled"}
    assert enrolled_batches, outcomes  # one of them always gets the bundle
    for outcome, detail in outcomes.values():
        if outcome == "enrolled":
            assert detail == 12
        else:
            # the holder's pid is named once it has written it (a reader may come a moment before)
            assert "the bundle" in detail and "in use by another process" in detail, detail
    load_bundle(fresh, keys(base)[1])  # signed and intact
    manifest = read_manifest(fresh)
    in_bundle = enrolled_label_ids(fresh, Manifest.from_dict(manifest))
    assert manifest["shards"]["vectors"] == len(in_bundle)  # each label once
    with Registry(registry_path) as registry:
        enrolled = {label.label_id for label in registry.labels() if label.status == "enrolled"}
    assert in_bundle == enrolled  # the registry matches the bundle
    assert {label_id.split("-")[0] for label_id in in_bundle} == enrolled_batches and len(in_bundle) == \
        12 * len(enrolled_batches)
