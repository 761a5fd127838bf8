"""The device's folder: settings kept atomically, and bundle updates from a folder (a USB
stick) that are checked before they replace the current bundle, with a real signed
enrolled bundle; a failed or interrupted update always leaves a bundle that loads."""

import json
import resource
import shutil
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.device_store import DeviceStore, bundle_version, device_home
from edge_app.errors import PufError
from edge_app.signing import default_trusted_keys_dir
from tests.bundle_support import enrolled_bundle, keys


@pytest.fixture(scope="module")
def signed(base, tmp_path_factory) -> Path:
    """A signed bundle with field 0 enrolled (do not modify: copy it)."""
    return enrolled_bundle(base, tmp_path_factory.mktemp("store") / "bundle")


@pytest.fixture(scope="module")
def trusted(base) -> Path:
    return keys(base)[1]


@pytest.fixture
def installed(signed, trusted, tmp_path) -> DeviceStore:
    store = DeviceStore(tmp_path / "home")
    store.install_bundle(signed, trusted)
    return store


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def resign(bundle: Path, private_key) -> None:
    from trainer.keys import sign_manifest

    (bundle / "manifest.json").write_text(json.dumps(sign_manifest(manifest(bundle), private_key)))


def test_the_device_home_is_puf_home_else_the_users_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PUF_HOME", str(tmp_path / "device"))
    assert device_home() == tmp_path / "device"
    store = DeviceStore()
    assert store.home.is_dir() and store.journal_path == tmp_path / "device" / "journal.sqlite"
    monkeypatch.delenv("PUF_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert device_home() == tmp_path / "data" / "puf"
    (tmp_path / "file").write_text("x")
    with pytest.raises(PufError, match="cannot make the device's folder"):
        DeviceStore(tmp_path / "file" / "home")


def test_settings_have_defaults_and_are_saved_atomically(tmp_path, monkeypatch):
    store = DeviceStore(tmp_path)
    # label_px None: the label size is found in each photo (auto)
    assert store.load_settings() == {"camera": "opencv:0", "exposure_us": None, "gain": None, "label_px": None}
    store.save_settings({"camera": "file:/media/usb/shots", "exposure_us": 20000, "gain": None, "label_px": 250.0})
    assert store.load_settings() == {"camera": "file:/media/usb/shots", "exposure_us": 20000, "gain": None,
                                     "label_px": 250.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # no temporary file left
    store.save_settings({"gain": 2.0})
    assert store.load_settings() == {"camera": "opencv:0", "exposure_us": None, "gain": 2.0, "label_px": None}
    with pytest.raises(PufError, match="cannot be saved"):
        store.save_settings({"camera": object()})
    assert store.load_settings()["gain"] == 2.0  # the failed save changed nothing
    (tmp_path / "settings.json").write_text('{"camera": "opencv:1", ')  # a torn file counts as none
    assert store.load_settings()["camera"] == "opencv:0"


def test_trusted_keys_are_the_devices_own_folder_if_it_has_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PUF_TRUSTED_KEYS", str(tmp_path / "elsewhere"))
    store = DeviceStore(tmp_path / "home")
    assert store.trusted_keys_dir() == default_trusted_keys_dir() == tmp_path / "elsewhere"
    (tmp_path / "home" / "trusted_keys").mkdir()
    assert store.trusted_keys_dir() == tmp_path / "home" / "trusted_keys"


def test_a_signed_bundle_installs_and_the_one_it_replaces_is_kept(signed, trusted, tmp_path):
    store = DeviceStore(tmp_path / "home")
    assert store.bundle_path() is None
    copied = []
    bundle = store.install_bundle(signed, trusted, progress=lambda done, total: copied.append((done, total)))
    home = tmp_path / "home"
    size = sum(p.stat().st_size for p in signed.rglob("*") if p.is_file())
    assert copied[-1] == (size, size) and [d for d, _ in copied] == sorted(d for d, _ in copied)
    assert store.bundle_path() == bundle.path == home / "bundle"
    assert bundle.signer is not None and len(bundle.shards) == 12
    assert bundle_version(load_bundle(home / "bundle", trusted)) == bundle_version(bundle)
    assert not (home / "bundle.incoming").exists() and not (home / "bundle.previous").exists()
    store.install_bundle(signed, trusted, allow_older=True)  # the same sequence again: only on purpose
    assert (home / "bundle.previous" / "manifest.json").is_file()
    assert load_bundle(store.bundle_path(), trusted).signer == bundle.signer
    assert sorted(p.name for p in signed.iterdir()) == sorted(p.name for p in (home / "bundle").iterdir())


def test_the_bundle_version_is_the_model_version_and_a_digest_of_the_manifest(signed, trusted, base, tmp_path):
    from trainer.keys import load_private_key

    bundle = load_bundle(signed, trusted)
    version = bundle_version(bundle)
    model, digest = version.rsplit("-", 1)
    assert model == manifest(signed)["model"]["version"] and len(digest) == 8 and int(digest, 16) >= 0
    changed = Path(shutil.copytree(signed, tmp_path / "b"))
    data = manifest(changed)
    data["decision"]["threshold"] = 0.7
    (changed / "manifest.json").write_text(json.dumps(data))
    resign(changed, load_private_key(keys(base)[0]))
    assert bundle_version(load_bundle(changed, trusted)) != version


def _tampered(bundle: Path, base: Path) -> str:
    ids = next((bundle / "shards").glob("*.ids.npy"))
    ids.write_bytes(ids.read_bytes().replace(b"V1-0000", b"V1-0001", 1))
    return f"shards/{ids.name}"


def _unsigned(bundle: Path, base: Path) -> str:
    data = manifest(bundle)
    data["signature"] = None
    (bundle / "manifest.json").write_text(json.dumps(data))
    return "manifest.json is not signed"


def _untrusted(bundle: Path, base: Path) -> str:
    from trainer.keys import generate_keypair, load_private_key

    private, _, key_id = generate_keypair(base / "keys" / "stranger", overwrite=True)
    resign(bundle, load_private_key(private))
    return f"signed by key {key_id}, which this device does not trust"


def _half_copied(bundle: Path, base: Path) -> str:
    model = bundle / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    (bundle / "shards" / "p03.faiss").unlink(missing_ok=True)
    return "model_int8.tflite does not match its checksum"


def _missing_file(bundle: Path, base: Path) -> str:
    name = sorted(manifest(bundle)["files"])[-1]
    (bundle / name).unlink()
    return f"bundle file {name} is missing"


def _extra_file(bundle: Path, base: Path) -> str:
    (bundle / "shards" / "p99.faiss").write_bytes(b"planted")
    return "shards/p99.faiss is not listed in the signed manifest"


def _no_folder(bundle: Path, base: Path) -> str:
    shutil.rmtree(bundle)
    return "no bundle at"


def _not_a_bundle(bundle: Path, base: Path) -> str:
    (bundle / "manifest.json").unlink()
    return "is not a bundle: it has no manifest.json"


@pytest.mark.parametrize("spoil", [_tampered, _unsigned, _untrusted, _half_copied, _missing_file, _extra_file,
                                   _no_folder, _not_a_bundle])
def test_a_bad_update_is_refused_naming_the_file_and_the_old_bundle_still_loads(installed, signed, trusted, base,
                                                                                 tmp_path, spoil):
    before = bundle_version(load_bundle(installed.bundle_path(), trusted))
    update = Path(shutil.copytree(signed, tmp_path / "usb" / "bundle"))
    message = spoil(update, base)
    with pytest.raises(PufError) as refused:
        installed.install_bundle(update, trusted)
    assert message in str(refused.value)
    assert "bundle.incoming" not in str(refused.value)  # named as on the stick, not the device's scratch folder
    home = installed.home
    assert not (home / "bundle.incoming").exists()
    assert bundle_version(load_bundle(installed.bundle_path(), trusted)) == before
    assert bundle_version(load_bundle(DeviceStore(home).bundle_path(), trusted)) == before


def test_a_disk_that_fills_during_the_copy_leaves_the_old_bundle(installed, signed, trusted):
    """The copy's writes fail part way (a file-size limit makes the kernel refuse them, as a
    full disk would): the update is refused naming the file, nothing half-copied is kept."""
    before = bundle_version(load_bundle(installed.bundle_path(), trusted))
    largest = max((p for p in signed.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest.stat().st_size // 2, hard))
    try:
        with pytest.raises(PufError) as refused:
            installed.install_bundle(signed, trusted)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert f"bundle file {largest.relative_to(signed).as_posix()} could not be copied" in str(refused.value)
    assert "current bundle is unchanged" in str(refused.value)
    assert not (installed.home / "bundle.incoming").exists()
    assert bundle_version(load_bundle(installed.bundle_path(), trusted)) == before


def test_a_crash_between_the_two_renames_leaves_a_bundle_that_loads(installed, trusted):
    """What a power cut after `bundle -> bundle.previous` and before `bundle.incoming ->
    bundle` leaves: opening the store puts the previous bundle back."""
    home = installed.home
    version = bundle_version(load_bundle(home / "bundle", trusted))
    shutil.copytree(home / "bundle", home / "bundle.incoming")
    (home / "bundle").rename(home / "bundle.previous")
    store = DeviceStore(home)
    assert store.bundle_path() == home / "bundle"
    assert bundle_version(load_bundle(store.bundle_path(), trusted)) == version
    assert not (home / "bundle.incoming").exists() and not (home / "bundle.previous").exists()


def test_a_crash_during_the_copy_leaves_the_bundle_and_no_scraps(installed, trusted):
    home = installed.home
    (home / "bundle.incoming" / "shards").mkdir(parents=True)
    (home / "bundle.incoming" / "shards" / "p00.faiss").write_bytes(b"half")
    store = DeviceStore(home)
    assert not (home / "bundle.incoming").exists()
    assert load_bundle(store.bundle_path(), trusted).signer is not None


def _release(bundle: Path, base: Path, **fields) -> Path:
    """`bundle` re-signed by the factory's key with its release fields set (None: removed)."""
    from trainer.keys import load_private_key

    data = manifest(bundle)
    for key, value in fields.items():
        data.pop(key, None) if value is None else data.__setitem__(key, value)
    (bundle / "manifest.json").write_text(json.dumps(data))
    resign(bundle, load_private_key(keys(base)[0]))
    return bundle


def _installed_sequence(store: DeviceStore, trusted: Path) -> int:
    return load_bundle(store.bundle_path(), trusted).release.sequence


def test_a_signed_bundle_carries_its_sequence_and_signing_time(signed, trusted):
    from datetime import UTC, datetime, timedelta

    release = load_bundle(signed, trusted).release
    assert release.sequence == 1  # export wrote none (0); the enrollment's signing raised it
    assert timedelta(0) <= datetime.now(UTC) - release.created < timedelta(days=1)
    assert release.expires is None and not release.expired()


def test_a_newer_bundle_installs_and_an_older_or_equal_one_is_refused_unless_allowed(installed, signed, trusted,
                                                                                      base, tmp_path):
    newer = _release(Path(shutil.copytree(signed, tmp_path / "usb" / "newer")), base, sequence=5)
    installed.install_bundle(newer, trusted)
    assert _installed_sequence(installed, trusted) == 5
    version = bundle_version(load_bundle(installed.bundle_path(), trusted))
    for sequence, word in ((4, "older than"), (5, "the same as"), (None, "older than")):  # none counts as 0
        update = _release(Path(shutil.copytree(signed, tmp_path / "usb" / f"s{sequence}")), base, sequence=sequence)
        with pytest.raises(PufError, match=f"has sequence {sequence or 0}, {word} the installed bundle's 5"):
            installed.install_bundle(update, trusted)
        assert bundle_version(load_bundle(installed.bundle_path(), trusted)) == version  # the newer one stays
        assert not (installed.home / "bundle.incoming").exists()
    installed.install_bundle(tmp_path / "usb" / "s4", trusted, allow_older=True)  # going back on purpose
    assert _installed_sequence(installed, trusted) == 4
    fresh = DeviceStore(tmp_path / "fresh")  # a device with no bundle takes any signed one, sequence 0 too
    fresh.install_bundle(tmp_path / "usb" / "sNone", trusted)
    assert _installed_sequence(fresh, trusted) == 0


def test_an_expired_bundle_is_refused_even_when_older_ones_are_allowed(installed, signed, trusted, base, tmp_path):
    from datetime import UTC, datetime, timedelta

    from edge_app.bundle_format import utc_text

    version = bundle_version(load_bundle(installed.bundle_path(), trusted))
    expired = _release(Path(shutil.copytree(signed, tmp_path / "usb" / "expired")), base, sequence=9,
                       expires=utc_text(datetime.now(UTC) - timedelta(minutes=1)))
    for allow_older in (False, True):
        with pytest.raises(PufError, match="expired on .* UTC: ask the factory for a current one"):
            installed.install_bundle(expired, trusted, allow_older=allow_older)
    assert bundle_version(load_bundle(installed.bundle_path(), trusted)) == version
    current = _release(Path(shutil.copytree(signed, tmp_path / "usb" / "current")), base, sequence=9,
                       expires=utc_text(datetime.now(UTC) + timedelta(days=30)))
    installed.install_bundle(current, trusted)
    release = load_bundle(installed.bundle_path(), trusted).release
    assert release.sequence == 9 and not release.expired()
    assert release.expired(datetime.now(UTC) + timedelta(days=31))


@pytest.mark.parametrize("fields, message", [({"sequence": "7"}, "sequence must be a whole number"),
                                             ({"sequence": -1}, "sequence must be a whole number"),
                                             ({"expires": "next year"}, "expires must be an ISO 8601 time"),
                                             ({"created": "2026-01-01T00:00:00"}, "created must be an ISO 8601")])
def test_a_signed_bundle_with_unusable_release_fields_is_refused(installed, signed, trusted, base, tmp_path,
                                                                 fields, message):
    update = _release(Path(shutil.copytree(signed, tmp_path / "usb" / "bad")), base, **fields)
    with pytest.raises(PufError, match=message):
        installed.install_bundle(update, trusted)
    assert _installed_sequence(installed, trusted) == 1


@pytest.mark.parametrize("threshold", ["abc", [0.6], {"value": 0.6}])
def test_a_signed_bundle_that_cannot_be_opened_is_refused_and_the_old_one_stays(installed, signed, trusted, base,
                                                                                 tmp_path, threshold):
    version = bundle_version(load_bundle(installed.bundle_path(), trusted))
    update = Path(shutil.copytree(signed, tmp_path / "usb" / "bundle"))
    data = manifest(update)
    data["decision"]["threshold"] = threshold
    _release(update, base, decision=data["decision"], sequence=2)
    with pytest.raises(PufError, match="threshold"):  # refused when read, or when tried whole
        installed.install_bundle(update, trusted)
    assert bundle_version(load_bundle(installed.bundle_path(), trusted)) == version
    assert bundle_version(load_bundle(DeviceStore(installed.home).bundle_path(), trusted)) == version
    assert not (installed.home / "bundle.incoming").exists()
