"""Revocations on a device (`puf device install`): they survive a device update, and a bundle
whose revocation list is older, leaves a revoked label out, or is not the one signed is refused."""

import json
import shutil
from pathlib import Path

import pytest

from tests.bundle_support import enroll_crops, enrolled_bundle, keys
from tests.store_support import SLOT, label, main, revoke, verdict
from trainer.enroll import enroll
from trainer.keys import load_private_key


def install(base, home: Path, bundle: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["device", "install", str(bundle), "--home", str(home), *extra])
    out = capsys.readouterr()
    return status, out.out + out.err


def newer(base, bundle: Path, times: int = 1) -> Path:
    """The bundle re-signed `times` more (an enrollment adding nothing): a higher sequence."""
    for _ in range(times):
        enroll(bundle, enroll_crops(base), load_private_key(keys(base)[0]), progress=False)
    return bundle


@pytest.fixture
def device(base, tmp_path, capsys) -> Path:
    """A device trusting the factory key, its bundle revoked once (list version 1)."""
    home = tmp_path / "home"
    (home / "trusted_keys").mkdir(parents=True)
    shutil.copy(keys(base)[1] / "factory.pub", home / "trusted_keys")
    bundle = enrolled_bundle(base, tmp_path / "factory")
    assert install(base, home, bundle, capsys)[0] == 0
    assert revoke(base, bundle, capsys, label(SLOT), "--reason", "recalled")[0] == 0
    status, said = install(base, home, bundle, capsys)
    assert status == 0 and "1 revoked" in said
    return home


def test_a_revocation_survives_a_device_update(base, device, tmp_path, capsys):
    factory = newer(base, tmp_path / "factory")  # a later bundle that carries the list
    assert install(base, device, factory, capsys)[0] == 0
    status, found = verdict(base, device / "bundle", tmp_path, SLOT, capsys)
    assert status == 1 and found["verdict"] == "revoked" and "recalled" in found["reason"]


def test_a_later_bundle_without_the_revocation_is_refused(base, device, tmp_path, capsys):
    fresh = newer(base, enrolled_bundle(base, tmp_path / "fresh"), times=3)  # sequence above, list absent
    before = (device / "bundle" / "manifest.json").read_bytes()
    for extra in ((), ("--allow-older",)):
        status, said = install(base, device, fresh, capsys, *extra)
        assert status == 2 and "has revocation list version 0, older than the version 1" in said
    assert (device / "bundle" / "manifest.json").read_bytes() == before
    (device / "bundle" / "revoked.json").unlink()  # the record beside the bundle still holds the label
    status, said = install(base, device, fresh, capsys)
    assert status == 2 and "older than the version 1" in said


def test_an_older_revocation_list_is_refused(base, device, tmp_path, capsys):
    older = Path(shutil.copytree(tmp_path / "factory", tmp_path / "older", symlinks=True))  # list version 1
    assert revoke(base, tmp_path / "factory", capsys, label(2))[0] == 0  # list version 2, installed
    assert install(base, device, tmp_path / "factory", capsys)[0] == 0
    status, said = install(base, device, newer(base, older, times=3), capsys)  # a higher sequence, list 1
    assert status == 2 and "revocation list version 1, older than the version 2" in said
    assert json.loads((device / "revoked_seen.json").read_text()) == {"version": 2,
                                                                       "label_ids": sorted([label(2), label(SLOT)])}


def test_an_unsigned_or_altered_revocation_list_is_refused(base, device, tmp_path, capsys):
    factory = newer(base, tmp_path / "factory")
    altered = Path(shutil.copytree(factory, tmp_path / "altered"))
    listed = json.loads((altered / "revoked.json").read_text())
    (altered / "revoked.json").write_text(json.dumps({**listed, "version": 9}))
    status, said = install(base, device, altered, capsys)
    assert status == 2 and "bundle file revoked.json does not match its checksum" in said
    planted = Path(shutil.copytree(newer(base, enrolled_bundle(base, tmp_path / "plain"), 3), tmp_path / "planted"))
    (planted / "revoked.json").write_text(json.dumps({**listed, "version": 9}))  # a list no one signed
    status, said = install(base, device, planted, capsys)
    assert status == 2 and "bundle file revoked.json is not listed in the signed manifest" in said


def junk_list(bundle: Path, junk: str) -> dict:
    """The files of `bundle`'s revocation list made into `junk`; returns them by name."""
    import numpy as np

    listed = json.loads((bundle / "revoked.json").read_text())
    vectors = np.load(bundle / "revoked" / "vectors.npy")
    ids = np.load(bundle / "revoked" / "ids.npy")
    entry = listed["entries"][0]
    if junk == "version 0":
        listed["version"] = 0
    elif junk == "listed twice":
        listed["entries"] *= 2
    elif junk == "a bad id":
        entry["label_id"] = "../x"
    elif junk == "7-d vectors":
        vectors = vectors[:, :7].copy()
    elif junk == "an unlisted id":
        ids = np.array([b"V1-0000-09"] * len(ids))
    (bundle / "revoked.json").write_text(json.dumps(listed))
    np.save(bundle / "revoked" / "vectors.npy", vectors)
    np.save(bundle / "revoked" / "ids.npy", ids)
    return {name: bundle / name for name in ("revoked.json", "revoked/vectors.npy", "revoked/ids.npy")}


JUNK = [("version 0", '"version" must be a whole number of at least 1'), ("listed twice", "a label is listed twice"),
        ("a bad id", "label id '../x' is not allowed"), ("7-d vectors", "float32 fingerprints"),
        ("an unlisted id", "names V1-0000-09, which the revocation list does not list")]


@pytest.mark.parametrize("junk, message", JUNK)
def test_a_signed_junk_revocation_list_is_a_clear_refusal_and_no_key_signs_one(base, device, tmp_path, capsys, junk,
                                                                               message):
    from edge_app.bundle_format import FileEntry, Manifest
    from edge_app.errors import PufError
    from trainer.bundle_write import BundleUpdate
    from trainer.keys import sign_manifest

    signed = Path(shutil.copytree(tmp_path / "factory", tmp_path / "signed"))
    files = junk_list(signed, junk)
    data = json.loads((signed / "manifest.json").read_text())
    data["files"].update({name: FileEntry.of(path).to_dict() for name, path in files.items()})
    data["sequence"] += 5
    (signed / "manifest.json").write_text(json.dumps(sign_manifest(data, load_private_key(keys(base)[0]))))
    status, said = install(base, device, signed, capsys)
    assert status == 2 and message in said and "Traceback" not in said
    factory = tmp_path / "factory"
    before = (factory / "manifest.json").read_bytes()
    with pytest.raises(PufError, match=message.replace("(", r"\(")), BundleUpdate(factory) as update:
        for name, path in junk_list(Path(shutil.copytree(factory, tmp_path / "junk")), junk).items():
            shutil.copy(path, update.path_for(name))
        update.commit(load_private_key(keys(base)[0]))
    assert (factory / "manifest.json").read_bytes() == before and Manifest.read(factory).signature


KILL_AFTER_SWAP = """
import os, signal, sys
from edge_app.cli import main
from edge_app.device_store import DeviceStore
DeviceStore._keep_root_list = lambda self, root_list: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(["device", "install", sys.argv[1], "--home", sys.argv[2]]))
"""


def test_a_device_killed_just_after_the_swap_still_holds_the_revocations_it_installed(base, tmp_path, capsys):
    """kill -9 the install the moment the new bundle is in place: what it revoked is already
    recorded, so a later bundle that leaves the label out is still refused."""
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    (home / "trusted_keys").mkdir(parents=True)
    shutil.copy(keys(base)[1] / "factory.pub", home / "trusted_keys")
    bundle = enrolled_bundle(base, tmp_path / "factory")
    assert install(base, home, bundle, capsys)[0] == 0
    assert revoke(base, bundle, capsys, label(SLOT))[0] == 0
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_SWAP, str(bundle), str(home)], capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (home / "bundle" / "revoked.json").is_file()  # the swap happened
    assert label(SLOT) in json.loads((home / "revoked_seen.json").read_text())["label_ids"]
    fresh = newer(base, enrolled_bundle(base, tmp_path / "fresh"), times=3)  # sequence above, list absent
    status, said = install(base, home, fresh, capsys)
    assert status == 2 and "older than the version 1" in said
