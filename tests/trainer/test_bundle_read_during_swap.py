"""Readers of a factory bundle while writers swap in new versions of it: each load sees the
old version or the new one whole, never an error (`edge_app.folder_swap.swap_version`), and a
bundle folder written before versions stays readable and becomes one on its first swap."""

import multiprocessing
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.bundle_format import TEMPLATES, Manifest, read_manifest
from edge_app.errors import PufError
from edge_app.folder_swap import KEEP_REPLACED_SECONDS, home_of, pending_of, versions_of
from tests.bundle_support import enrolled_bundle, keys
from trainer.bundle_write import BundleUpdate, bundle_lock
from trainer.keys import load_private_key

SWAPS = 40
LOADS_PER_SWAP = 50  # the writer waits for this many loads after each swap: thousands in all


def tiny_bundle(base: Path, out: Path) -> Path:
    """The enrolled test bundle cut to one shard and no model (a load reads neither), so that
    a load takes milliseconds; still a real, signed bundle folder as written before versions."""
    bundle = enrolled_bundle(base, out.with_name(f"{out.name}.source"))
    manifest = Manifest.read(bundle)
    assert manifest.shards is not None
    with BundleUpdate(bundle) as update:
        for name in (TEMPLATES, *(n for n in update.manifest.file_entries if n.endswith((".tflite", ".onnx")))):
            update.remove(name)
        shards = update.manifest.shards
        for pattern in list(shards.entries)[1:]:
            for name in shards.entries[pattern].named_files().values():
                if name is not None:
                    update.remove(name)
            del shards.entries[pattern]
        update.commit(load_private_key(keys(base)[0]))
    return Path(shutil.copytree(bundle, out))


def swap(bundle: Path, key, text: str) -> None:
    """One new version, as a writer makes it: under the lock, a file changed (`swap.txt`, whose
    checksum tells a reader that mixed two versions), signed, swapped in."""
    with bundle_lock(bundle), BundleUpdate(bundle) as update:
        update.path_for("swap.txt").write_text(text)
        update.commit(key)


def _load_in_a_loop(bundle: Path, trusted: Path, stop, loads, results) -> None:
    """Child process: load the bundle until told to stop; report loads, errors and whether the
    sequences it saw only ever went up."""
    errors, sequences = [], []
    while not stop.is_set():
        try:
            sequences.append(load_bundle(bundle, trusted).release.sequence)
        except Exception as error:  # every kind counts: none may happen
            errors.append(f"{type(error).__name__}: {error}")
        with loads.get_lock():
            loads.value += 1
    results.put((len(sequences), len(errors), errors[:3], sequences == sorted(sequences)))


def test_four_readers_during_forty_swaps_never_fail(base, tmp_path):
    bundle = tiny_bundle(base, tmp_path / "bundle")
    assert not bundle.is_symlink()  # the first swap turns a folder written before versions into one
    key = load_private_key(keys(base)[0])
    context = multiprocessing.get_context("spawn")
    stop, loads, results = context.Event(), context.Value("q", 0), context.Queue()
    readers = [context.Process(target=_load_in_a_loop, args=(bundle, keys(base)[1], stop, loads, results))
               for _ in range(4)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 600  # a safety net only: the readers load until stopped
    try:
        for i in range(SWAPS):
            wanted = loads.value + LOADS_PER_SWAP
            swap(bundle, key, f"version {i}")
            while loads.value < wanted and time.monotonic() < deadline and all(r.is_alive() for r in readers):
                time.sleep(0.002)
    finally:
        stop.set()
    reports = [results.get(timeout=120) for _ in readers]
    for reader in readers:
        reader.join(60)
        assert reader.exitcode == 0
    assert sum(n for n, *_ in reports) >= SWAPS * LOADS_PER_SWAP  # thousands of loads
    assert [(errors, examples) for _, errors, examples, _ in reports] == [(0, [])] * 4
    assert all(in_order for *_, in_order in reports)  # never an older version after a newer one
    assert (bundle / "swap.txt").read_text() == f"version {SWAPS - 1}"
    assert bundle.is_symlink() and bundle.resolve().parent == versions_of(bundle)


def test_a_bundle_written_before_versions_becomes_one_and_keeps_replaced_versions_a_while(base, tmp_path):
    bundle = tiny_bundle(base, tmp_path / "bundle")
    before = read_manifest(bundle)
    key = load_private_key(keys(base)[0])
    swap(bundle, key, "one")
    old, new = sorted(versions_of(bundle).iterdir(), key=lambda p: read_manifest(p)["sequence"])
    assert bundle.is_symlink() and bundle.resolve() == new
    assert read_manifest(old) == before  # the folder that was there, whole, for its last readers
    assert load_bundle(bundle, keys(base)[1]).path == new  # read from one version
    swap(bundle, key, "two")
    assert {old, new} < set(versions_of(bundle).iterdir())  # replaced just now: kept for their readers
    past = time.time() - KEEP_REPLACED_SECONDS - 1
    os.utime(old, (past, past))  # as if replaced longer ago
    swap(bundle, key, "three")
    assert old not in set(versions_of(bundle).iterdir()) and new in set(versions_of(bundle).iterdir())


def test_a_link_to_the_bundle_is_the_bundle(base, tmp_path):
    bundle = tiny_bundle(base, tmp_path / "site" / "bundle")
    link = tmp_path / "link"
    link.symlink_to(bundle)
    assert home_of(link) == home_of(bundle) == bundle
    swap(link, load_private_key(keys(base)[0]), "through the link")
    assert link.is_symlink() and link.resolve() == bundle.resolve()  # the link still leads to the bundle
    assert (bundle / "swap.txt").read_text() == "through the link"
    assert home_of(link) == bundle and not versions_of(link).exists()


def test_a_swap_cut_between_its_two_renames_is_completed_by_the_next_reader(base, tmp_path):
    """Where the kernel cannot exchange two paths, a folder written before versions becomes one
    by two renames; a crash between them leaves no bundle but the new link beside it, which the
    next reader (or writer) puts in place."""
    bundle = tiny_bundle(base, tmp_path / "bundle")
    swap(bundle, load_private_key(keys(base)[0]), "one")
    link = os.readlink(bundle)
    os.rename(bundle, pending_of(bundle))  # the new link made, not yet renamed into place
    assert not bundle.exists()
    assert load_bundle(bundle, keys(base)[1]).path == bundle.resolve()
    assert os.readlink(bundle) == link and not pending_of(bundle).exists()


def test_a_symlink_loop_is_refused_not_followed(base, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(PufError, match="symbolic links in a row"):
        load_bundle(tmp_path / "a", keys(base)[1])
    with pytest.raises(PufError, match="symbolic links in a row"):
        with bundle_lock(tmp_path / "a"):
            pass


def test_puf_verify_runs_during_swaps_all_give_their_verdict(base, tmp_path):
    """The whole command: it loads the bundle and then opens its model, from the version it
    resolved, which a swap does not remove under it. Six runs, a writer swapping all along."""
    import threading

    import cv2

    from tests.bundle_support import sim_batch
    from tests.faults import puf_command

    bundle = enrolled_bundle(base, tmp_path / "bundle")
    image, _ = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "genuine.jpg"), image)
    key, stop, swaps = load_private_key(keys(base)[0]), threading.Event(), []

    def writer() -> None:
        while not stop.is_set():
            swap(bundle, key, f"version {len(swaps)}")
            swaps.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        runs = [subprocess.run(puf_command("verify", str(tmp_path / "genuine.jpg"), "--bundle", str(bundle),
                                           "--trusted-keys", str(keys(base)[1])), capture_output=True, text=True)
                for _ in range(6)]
    finally:
        stop.set()
        thread.join()
    assert [(run.returncode, run.stderr[-300:]) for run in runs if run.returncode != 0] == []
    assert len(swaps) >= 6
