"""A root of trust (`edge_app.trust_root`): a device that trusts only root keys accepts the
bundles of the signing keys the newest root list names, and each rule of the list is tried:
an unlisted or dropped key, an older, expired, under-signed, twice-signed, altered or
malformed list, a rotation of the roots. Real keys, a real enrolled bundle, real installs
(`DeviceStore.install_bundle`, and `puf device install` / `puf verify` in a fresh process);
the device's trusted-keys folder is never touched after the roots are put in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.device_setup import trust_key
from edge_app.device_store import DeviceStore
from edge_app.errors import PufError
from tests.bundle_support import enrolled_bundle, keys, sim_batch


@pytest.fixture(scope="module")
def signed(base, tmp_path_factory) -> Path:
    """The enrolled bundle signed by the factory key (do not modify: copy it)."""
    return enrolled_bundle(base, tmp_path_factory.mktemp("roots") / "bundle")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict:
    """Name -> `trainer.keys.SigningKey`: roots r1, r2, r3, a rogue root, a second signing key."""
    from trainer.keys import generate_keypair, load_private_key

    folder = tmp_path_factory.mktemp("root_keys")
    return {name: load_private_key(generate_keypair(folder / name)[0])
            for name in ("r1", "r2", "r3", "rogue", "factory2")}


@pytest.fixture(scope="module")
def factory(base):
    from trainer.keys import load_private_key

    return load_private_key(keys(base)[0])


def public(signer) -> object:
    return signer.key.public_key()


def root_list(roots: list, signers: list, sign_with: list, *, version: int = 1, threshold: int = 2,
              valid_days: float = 30) -> dict:
    """A root list of `roots` naming `signers`, signed by the keys of `sign_with`."""
    from trainer.keys import new_root_list, sign_root_list

    document = new_root_list([public(r) for r in roots], [public(s) for s in signers], threshold, valid_days,
                             version)
    for root in sign_with:
        document = sign_root_list(document, root, "the test's list")
    return document


def carrying(signed: Path, out: Path, signer, sequence: int, listed: dict | None) -> Path:
    """A copy of the bundle with `sequence`, signed by `signer`, carrying the root list `listed`."""
    from trainer.keys import sign_manifest

    shutil.copytree(signed, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sequence"] = sequence
    (out / "manifest.json").write_text(json.dumps(sign_manifest(manifest, signer)))
    if listed is not None:
        (out / "root.json").write_text(json.dumps(listed))
    return out


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def device(tmp_path, pairs) -> tuple[DeviceStore, Path]:
    """A device that trusts roots r1 and r2 and no signing key: its store and trusted-keys folder."""
    trusted = tmp_path / "trusted"
    for name in ("r1", "r2"):
        trust_key(pairs[name].path.with_suffix(".pub"), trusted / "root")
    return DeviceStore(tmp_path / "home"), trusted


@pytest.fixture
def holding_v1(device, pairs, factory, signed, tmp_path) -> tuple[DeviceStore, Path, dict]:
    """`device` with a bundle of the factory key installed, carrying list v1 (r1, r2; 2 of 2; factory)."""
    store, trusted = device
    v1 = root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"], pairs["r2"]])
    store.install_bundle(carrying(signed, tmp_path / "usb" / "v1", factory, 1, v1), trusted)
    return store, trusted, v1


def installed_signer(store: DeviceStore, trusted: Path) -> tuple[str, int]:
    from edge_app.bundle import load_bundle

    bundle = load_bundle(store.bundle_path(), trusted, root_list=store.root_list_path())
    return bundle.signer, bundle.release.sequence


def test_a_device_with_only_roots_accepts_a_listed_signer_and_refuses_any_other(device, pairs, factory, signed,
                                                                                 tmp_path):
    store, trusted = device
    before = snapshot(trusted)
    v1 = root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"], pairs["r2"]])
    with pytest.raises(PufError, match="holds no root list, and the bundle .* carries none"):
        store.install_bundle(carrying(signed, tmp_path / "usb" / "bare", factory, 1, None), trusted)
    unlisted = carrying(signed, tmp_path / "usb" / "unlisted", pairs["factory2"], 1, v1)
    with pytest.raises(PufError, match=f"signed by key {pairs['factory2'].key_id}, which this device does not trust"):
        store.install_bundle(unlisted, trusted)
    assert store.bundle_path() is None and not store.root_list_path().exists()
    store.install_bundle(carrying(signed, tmp_path / "usb" / "listed", factory, 1, v1), trusted)
    assert installed_signer(store, trusted) == (factory.key_id, 1)
    assert json.loads(store.root_list_path().read_text()) == v1  # kept beside the bundle
    assert snapshot(trusted) == before


def test_a_dropped_key_is_refused_even_carrying_the_old_list_and_a_new_key_is_accepted(holding_v1, pairs, factory,
                                                                                       signed, tmp_path):
    store, trusted, v1 = holding_v1
    before = snapshot(trusted)
    v2 = root_list([pairs["r1"], pairs["r2"]], [pairs["factory2"]], [pairs["r1"], pairs["r2"]], version=2)
    store.install_bundle(carrying(signed, tmp_path / "usb" / "new_key", pairs["factory2"], 2, v2), trusted)
    assert installed_signer(store, trusted) == (pairs["factory2"].key_id, 2)
    assert json.loads(store.root_list_path().read_text()) == v2
    leaked = {"old list": (v1, "has version 1, older than version 2 this device holds"),
              "no list": (None, f"signed by key {factory.key_id}, which this device does not trust"),
              "new list": (v2, f"signed by key {factory.key_id}, which this device does not trust")}
    for name, (listed, message) in leaked.items():
        with pytest.raises(PufError, match=message):
            store.install_bundle(carrying(signed, tmp_path / "usb" / name, factory, 3, listed), trusted)
        assert installed_signer(store, trusted) == (pairs["factory2"].key_id, 2)
        assert json.loads(store.root_list_path().read_text()) == v2
    # the key the list still names signs on, carrying the held list or none
    store.install_bundle(carrying(signed, tmp_path / "usb" / "later", pairs["factory2"], 3, None), trusted)
    assert installed_signer(store, trusted) == (pairs["factory2"].key_id, 3)
    assert snapshot(trusted) == before


def _expired(pairs, factory):
    from datetime import UTC, datetime, timedelta

    from edge_app.bundle_format import utc_text
    from trainer.keys import sign_root_list

    listed = root_list([pairs["r1"], pairs["r2"]], [factory], [], version=2)
    listed["expires"] = utc_text(datetime.now(UTC) - timedelta(minutes=1))
    for root in (pairs["r1"], pairs["r2"]):
        listed = sign_root_list(listed, root, "expired")
    return listed


def _twice(pairs, factory):
    listed = root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"]], version=2)
    return {**listed, "signatures": listed["signatures"] * 2}


def _altered(pairs, factory):
    listed = root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"], pairs["r2"]], version=2)
    from edge_app.trust_root import encode_key

    listed["keys"][pairs["factory2"].key_id] = encode_key(public(pairs["factory2"]))  # a key slipped in
    return listed


def _unknown_field(pairs, factory):
    return {**root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"], pairs["r2"]], version=2),
            "roles": {"all": "trusted"}}


def _wrong_id(pairs, factory):
    listed = root_list([pairs["r1"], pairs["r2"]], [factory], [], version=2)
    listed["keys"] = {pairs["factory2"].key_id: listed["keys"][factory.key_id]}
    return listed


def _field(name, value):
    def build(pairs, factory):
        return {**root_list([pairs["r1"], pairs["r2"]], [factory], [], version=2), name: value}
    return build


BAD_LISTS = {
    "same version, other keys": (lambda p, f: root_list([p["r1"], p["r2"]], [f, p["factory2"]], [p["r1"], p["r2"]]),
                                 "has version 1, as the list this device holds, but other contents"),
    "expired": (_expired, "expired on .* UTC"),
    "too few roots": (lambda p, f: root_list([p["r1"], p["r2"]], [f], [p["r1"]], version=2),
                      "signed by 1 of the 2 current root keys, 2 needed"),
    "one root twice": (_twice, "signed twice by root"),
    "altered": (_altered, "the signature of root .* does not match the list"),
    "rogue roots": (lambda p, f: root_list([p["rogue"]], [f], [p["rogue"]], version=2, threshold=1),
                    "signed by 0 of the 2 current root keys, 2 needed"),
    "unknown field": (_unknown_field, "unknown field"),
    "key id of another key": (_wrong_id, "is the id of another key"),
    "threshold 0": (_field("threshold", 0), "threshold must be a whole number from 1 to 2"),
    "threshold 3 of 2": (_field("threshold", 3), "threshold must be a whole number from 1 to 2"),
    "version text": (_field("version", "3"), "version must be a whole number"),
    "version true": (_field("version", True), "version must be a whole number"),
    "version 2^60": (_field("version", 2**60), "version must be a whole number"),
    "expires no zone": (_field("expires", "2030-01-01T00:00:00"), "expires must be an ISO 8601 time"),
    "no keys": (_field("keys", {}), "keys must map 1 to 64"),
}


@pytest.mark.parametrize("name", BAD_LISTS)
def test_a_bad_root_list_is_refused_and_the_device_keeps_its_bundle_and_list(name, holding_v1, pairs, factory,
                                                                              signed, tmp_path):
    store, trusted, v1 = holding_v1
    build, message = BAD_LISTS[name]
    bad = carrying(signed, tmp_path / "usb" / "bad", factory, 2, build(pairs, factory))
    with pytest.raises(PufError, match=message):
        store.install_bundle(bad, trusted)
    assert installed_signer(store, trusted) == (factory.key_id, 1)
    assert json.loads(store.root_list_path().read_text()) == v1


def test_a_first_list_must_be_signed_by_the_devices_own_roots(device, pairs, factory, signed, tmp_path):
    store, trusted = device
    rogue = root_list([pairs["rogue"]], [factory], [pairs["rogue"]], threshold=1)
    with pytest.raises(PufError, match="signed by 0 of this device's root keys, 2 needed"):
        store.install_bundle(carrying(signed, tmp_path / "usb" / "rogue", factory, 1, rogue), trusted)
    assert store.bundle_path() is None and not store.root_list_path().exists()


def test_a_first_list_needs_the_devices_threshold_not_its_own(device, pairs, factory, signed, tmp_path):
    """One leaked root key cannot hand a new device a list of its own making a 1-of-n list: the
    first list needs the threshold given at provisioning (all the device's roots by default)."""
    from edge_app.trust_root import set_device_threshold

    store, trusted = device
    leaked = root_list([pairs["r1"], pairs["r2"]], [pairs["factory2"]], [pairs["r1"]], threshold=1)
    bundle = carrying(signed, tmp_path / "usb" / "leaked", pairs["factory2"], 1, leaked)
    with pytest.raises(PufError, match="signed by 1 of this device's root keys, 2 needed"):
        store.install_bundle(bundle, trusted)
    assert store.bundle_path() is None and not store.root_list_path().exists()
    set_device_threshold(trusted, 1)  # provisioned as 1 of 2: then one root suffices, as asked
    store.install_bundle(bundle, trusted)
    assert installed_signer(store, trusted) == (pairs["factory2"].key_id, 1)
    with pytest.raises(PufError, match="--threshold must be from 1 to 2"):
        set_device_threshold(trusted, 3)


def test_roots_rotate_with_a_list_signed_by_enough_old_roots(holding_v1, pairs, factory, signed, tmp_path):
    """v2 replaces root r1 with r3, signed by the old roots (r1, r2) and the new (r2, r3); then
    r1 no longer counts, and r3 does, though the device's root folder still names r1 and not r3."""
    store, trusted, _ = holding_v1
    r1, r2, r3 = pairs["r1"], pairs["r2"], pairs["r3"]
    only_new = root_list([r2, r3], [factory], [r2, r3], version=2)  # r3 alone cannot vouch for itself
    with pytest.raises(PufError, match="signed by 1 of the 2 current root keys, 2 needed"):
        store.install_bundle(carrying(signed, tmp_path / "usb" / "only_new", factory, 2, only_new), trusted)
    rotated = root_list([r2, r3], [factory], [r1, r2, r3], version=2)
    store.install_bundle(carrying(signed, tmp_path / "usb" / "rotated", factory, 2, rotated), trusted)
    by_old = root_list([r2, r3], [factory, pairs["factory2"]], [r1, r2], version=3)
    with pytest.raises(PufError, match="signed by 1 of the 2 current root keys, 2 needed"):
        store.install_bundle(carrying(signed, tmp_path / "usb" / "by_old", factory, 3, by_old), trusted)
    by_new = root_list([r2, r3], [factory, pairs["factory2"]], [r2, r3], version=3)
    store.install_bundle(carrying(signed, tmp_path / "usb" / "by_new", pairs["factory2"], 3, by_new), trusted)
    assert installed_signer(store, trusted) == (pairs["factory2"].key_id, 3)


def test_a_held_list_that_expired_stops_the_device_until_a_current_one_comes(holding_v1, pairs, factory, signed,
                                                                              tmp_path):
    from datetime import UTC, datetime, timedelta

    from edge_app.bundle_format import utc_text
    from trainer.keys import sign_root_list

    store, trusted, v1 = holding_v1
    held = {**v1, "expires": utc_text(datetime.now(UTC) - timedelta(days=1)), "signatures": []}
    for root in (pairs["r1"], pairs["r2"]):
        held = sign_root_list(held, root, "held")
    store.root_list_path().write_text(json.dumps(held))  # as if the device had been off for a year
    with pytest.raises(PufError, match="the root list this device holds expired"):
        store.install_bundle(carrying(signed, tmp_path / "usb" / "none", factory, 2, None), trusted)
    v2 = root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"], pairs["r2"]], version=2)
    store.install_bundle(carrying(signed, tmp_path / "usb" / "v2", factory, 2, v2), trusted)
    assert installed_signer(store, trusted) == (factory.key_id, 2)


def test_a_key_signs_with_the_list_beside_it_and_refuses_one_that_does_not_name_it(signed, pairs, factory, base,
                                                                                    tmp_path):
    """`BundleUpdate.commit` attaches KEY.root.json (checked) to the new version, through the
    key's signing record; a list that does not name the key, or lacks root signatures, signs nothing."""
    from edge_app.bundle import load_bundle
    from trainer.bundle_write import BundleUpdate
    from trainer.keys import highest_signed, load_private_key, root_list_beside

    shutil.copytree(factory.path.parent, tmp_path / "keys")
    key = load_private_key(tmp_path / "keys" / factory.path.name)
    bundle = Path(shutil.copytree(signed, tmp_path / "bundle"))
    recorded = highest_signed(key)
    for listed, message in ((root_list([pairs["r1"]], [pairs["factory2"]], [pairs["r1"]], threshold=1),
                             f"does not name the signing key {key.key_id}"),
                            (root_list([pairs["r1"]], [factory], [], threshold=1), "signed by 0 of its own")):
        root_list_beside(key).write_text(json.dumps(listed))
        with pytest.raises(PufError, match=message), BundleUpdate(bundle) as update:
            update.commit(key)
        assert highest_signed(key) == recorded and not (bundle / "root.json").exists()
    good = root_list([pairs["r1"]], [factory], [pairs["r1"]], threshold=1)
    root_list_beside(key).write_text(json.dumps(good))
    with BundleUpdate(bundle) as update:
        update.commit(key)
    assert json.loads((bundle / "root.json").read_text()) == good
    root_list_beside(key).unlink()
    with BundleUpdate(bundle) as update:  # without a list beside the key, the bundle's own stays
        update.commit(key)
    assert json.loads((bundle / "root.json").read_text()) == good
    device = tmp_path / "device_keys"
    trust_key(pairs["r1"].path.with_suffix(".pub"), device / "root")
    assert load_bundle(bundle, device).signer == key.key_id


def puf(env: dict, *argv) -> subprocess.CompletedProcess:
    return subprocess.run(["puf", *map(str, argv)], env=env, capture_output=True, text=True, timeout=180)


def test_puf_root_device_install_and_verify_follow_the_newest_list(signed, pairs, factory, tmp_path):
    """The commands as an operator runs them: roots made and a list signed with `puf root`, the
    device given the roots with `puf device trust --root`; `puf device install` and `puf verify`
    then take the listed key, and refuse it once a newer list dropped it."""
    import cv2

    env = {k: v for k, v in os.environ.items() if k not in ("PUF_BUNDLE", "PUF_TRUSTED_KEYS")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               PUF_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    r1, r2 = (pairs[n].path.with_suffix(".pub") for n in ("r1", "r2"))
    listed = tmp_path / "root.json"
    made = puf(env, "root", "init", listed, "--root", r1, "--root", r2, "--threshold", "2", "--signer",
               factory.path.with_suffix(".pub"))
    assert made.returncode == 0 and "NOT yet signed by enough roots" in made.stdout, made.stderr
    half = puf(env, "root", "sign", listed, "--key", pairs["r1"].path, "--json")
    assert half.returncode == 0 and not json.loads(half.stdout)["complete"], half.stderr
    bundle = carrying(signed, tmp_path / "usb" / "b1", factory, 1, json.loads(listed.read_text()))
    for line in (("device", "trust", "--root", r1), ("device", "trust", "--root", r2)):
        assert puf(env, *line).returncode == 0
    refused = puf(env, "device", "install", bundle)
    assert refused.returncode == 2 and "signed by 1 of this device's root keys, 2 needed" in refused.stderr
    assert puf(env, "root", "sign", listed, "--key", pairs["r2"].path).returncode == 0
    shutil.copy(listed, bundle / "root.json")
    installed = puf(env, "device", "install", bundle, "--json")
    assert installed.returncode == 0, installed.stderr
    assert json.loads(installed.stdout)["signed_by"] == factory.key_id

    image, truth = sim_batch().handheld(0, 4, 8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    verified = puf(env, "verify", tmp_path / "photo.png", "--json")
    assert verified.returncode == 0, verified.stderr
    assert [v["verdict"] for v in json.loads(verified.stdout)["verdicts"]] == ["genuine"]

    dropped = puf(env, "root", "edit", listed, "--add-signer", pairs["factory2"].path.with_suffix(".pub"),
                  "--remove-signer", factory.path.with_suffix(".pub"), "--json")
    assert json.loads(dropped.stdout)["version"] == 2 and not json.loads(dropped.stdout)["complete"]
    puf(env, "root", "sign", listed, "--key", pairs["r1"].path, "--key", pairs["r2"].path)
    newer = carrying(signed, tmp_path / "usb" / "b2", pairs["factory2"], 2, json.loads(listed.read_text()))
    assert puf(env, "device", "install", newer).returncode == 0
    leaked = puf(env, "verify", tmp_path / "photo.png", "--bundle", bundle)  # the old bundle, its old list
    assert leaked.returncode == 2 and "has version 1, older than version 2 this device holds" in leaked.stderr


def test_the_app_on_a_device_with_only_roots_installs_and_opens_by_the_newest_list(device, pairs, factory, signed,
                                                                                  tmp_path):
    """The app's *Update bundle from folder* and its bundle status, on a device set up with roots only."""
    from edge_app.app.inspection import Inspector

    store, trusted = device
    inspector = Inspector(store, trusted_keys=trusted)
    v1 = root_list([pairs["r1"], pairs["r2"]], [factory], [pairs["r1"], pairs["r2"]])
    status = inspector.install(carrying(signed, tmp_path / "usb" / "v1", factory, 1, v1))
    assert status.ready and status.signer == factory.key_id, status.describe()
    v2 = root_list([pairs["r1"], pairs["r2"]], [pairs["factory2"]], [pairs["r1"], pairs["r2"]], version=2)
    inspector.install(carrying(signed, tmp_path / "usb" / "v2", pairs["factory2"], 2, v2))
    reopened = Inspector(store, bundle=tmp_path / "usb" / "v1", trusted_keys=trusted).open()  # the leaked key's
    assert not reopened.ready and "older than version 2 this device holds" in reopened.describe()
    inspector.close()


def test_puf_root_refuses_to_make_over_edit_wrongly_or_sign_beside_a_broken_signature(pairs, factory, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r1, r2 = (pairs[n].path.with_suffix(".pub") for n in ("r1", "r2"))
    listed = tmp_path / "root.json"
    assert puf(env, "root", "init", listed, "--root", r1, "--root", r2, "--signer", factory.path.with_suffix(".pub"),
               "--threshold", "2").returncode == 0
    made = listed.read_text()
    refusals = {("init", listed, "--root", r1, "--signer", r1): "exists: a root list is changed with puf root edit",
                ("edit", listed, "--remove-signer", "0123456789abcdef"): "lists no signing key 0123456789abcdef",
                ("edit", listed, "--remove-root", r2): "threshold must be a whole number from 1 to 1",
                ("init", tmp_path / "new.json", "--root", r1, "--signer", r1, "--threshold", "2"):
                    "threshold must be a whole number from 1 to 1",
                ("init", tmp_path / "new.json", "--root", r1, "--signer", r1, "--valid-days", "0"):
                    "validity must be more than 0"}
    for argv, message in refusals.items():
        refused = puf(env, "root", *argv)
        assert refused.returncode == 2 and message in refused.stderr, (argv, refused.stderr)
        assert listed.read_text() == made and not (tmp_path / "new.json").exists()
    assert puf(env, "root", "sign", listed, "--key", pairs["r1"].path).returncode == 0
    document = json.loads(listed.read_text())
    document["threshold"] = 1  # altered after r1 signed: r2 must not sign beside it
    listed.write_text(json.dumps(document))
    refused = puf(env, "root", "sign", listed, "--key", pairs["r2"].path)
    assert refused.returncode == 2 and f"the signature of root {pairs['r1'].key_id} does not match" in refused.stderr
    assert json.loads(listed.read_text()) == document


def test_a_held_list_edited_on_the_device_is_refused_not_believed(holding_v1, pairs, factory, signed, tmp_path):
    """The list the device holds is checked on its own root signatures each time: a key written
    into it by hand makes the device refuse bundles until a good list comes, never trust the key."""
    from edge_app.trust_root import encode_key

    store, trusted, v1 = holding_v1
    edited = json.loads(store.root_list_path().read_text())
    edited["keys"][pairs["factory2"].key_id] = encode_key(public(pairs["factory2"]))
    store.root_list_path().write_text(json.dumps(edited))
    with pytest.raises(PufError, match="the signature of root .* does not match the list"):
        store.install_bundle(carrying(signed, tmp_path / "usb" / "planted", pairs["factory2"], 2, None), trusted)
    assert json.loads((store.bundle_path() / "root.json").read_text()) == v1  # the installed bundle stays


def test_puf_root_attach_keeps_only_a_list_that_devices_would_accept_beside_the_key(pairs, factory, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    shutil.copytree(factory.path.parent, tmp_path / "keys")
    key = tmp_path / "keys" / factory.path.name
    beside = key.with_name(key.name + ".root.json")
    cases = {"other key": (root_list([pairs["r1"]], [pairs["factory2"]], [pairs["r1"]], threshold=1),
                           f"does not name the signing key {factory.key_id}"),
             "unsigned": (root_list([pairs["r1"]], [factory], [], threshold=1), "signed by 0 of its own"),
             "same root twice": (_twice(pairs, factory), "signed twice by root")}
    for name, (listed, message) in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(listed))
        refused = puf(env, "root", "attach", tmp_path / f"{name}.json", "--key", key)
        assert refused.returncode == 2 and message in refused.stderr, (name, refused.stderr)
        assert not beside.exists()
    good = root_list([pairs["r1"]], [factory], [pairs["r1"]], threshold=1)
    (tmp_path / "good.json").write_text(json.dumps(good))
    attached = puf(env, "root", "attach", tmp_path / "good.json", "--key", key, "--json")
    assert attached.returncode == 0 and json.loads(attached.stdout)["attached"] == str(beside), attached.stderr
    assert json.loads(beside.read_text()) == good
