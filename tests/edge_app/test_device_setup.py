"""Setting a device up and checking it, as its owner does from the shell: `puf device trust`,
`puf device install`, `puf verify` on the device's own bundle, `puf verify --self-test`.

Real runs of the installed `puf` in a fresh process, against the committed signed bundle and
handheld photos of tests/data/arm64 (12 labels enrolled; photo names say what they show), in a
device folder ($PUF_HOME) and a user config folder ($XDG_CONFIG_HOME) of the test's own. The
examples `--help` shows are run as they are printed, in a folder laid out with the names they use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "arm64"
GENUINE = "0000_genuine_B0001-0000-08.jpg"
KEY_ID = "15f1ec4e8c5c14d9"  # the committed bundle's signer


def environment(tmp_path: Path) -> dict:
    """`puf` on the PATH; the device's folder and the user's config in `tmp_path` (nothing of
    the machine's own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PUF_BUNDLE", "PUF_TRUSTED_KEYS", "PUF_HOME")}
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PUF_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}


def puf(tmp_path: Path, *argv, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["puf", *map(str, argv)], cwd=cwd or tmp_path, env=environment(tmp_path),
                          capture_output=True, text=True, timeout=120)


def trusted_dir(tmp_path: Path) -> Path:
    return tmp_path / "config" / "puf" / "trusted_keys"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A folder holding what the examples name: photo.jpg (a genuine label), shots/ (the six
    committed photos), bundles/b1 (their bundle), keys/factory.pub (its signer's public key)."""
    shutil.copy(DATA / "photos" / GENUINE, tmp_path / "photo.jpg")
    shutil.copytree(DATA / "photos", tmp_path / "shots")
    shutil.copytree(DATA / "bundle", tmp_path / "bundles" / "b1")
    shutil.copytree(DATA / "trusted_keys", tmp_path / "keys")
    return tmp_path


def examples(verb: str) -> list[str]:
    """The command lines of a verb's --help examples, as printed (comments cut)."""
    parser = build_parser()
    epilog = next(action for action in parser._subparsers._group_actions).choices[verb].epilog
    return [line.split("  #")[0].strip() for line in epilog.splitlines() if line.startswith("  puf ")]


def run_line(layout: Path, line: str) -> subprocess.CompletedProcess:
    """One example as a shell runs it (so shots/*.jpg is the shell's glob)."""
    return subprocess.run(["bash", "-c", line], cwd=layout, env=environment(layout), capture_output=True, text=True,
                          timeout=120)


def test_the_examples_of_device_and_verify_run_as_printed_on_a_new_device(layout):
    """A new device: `puf verify photo.jpg` says how to install a bundle; after the device
    examples (trust the key, install the bundle) every verify example runs and gives the
    verdicts the photos' names say."""
    refused = run_line(layout, "puf verify photo.jpg")
    assert refused.returncode == 2 and "puf device install" in refused.stderr, refused.stderr

    device = examples("device")
    assert [line.split()[2] for line in device] == ["trust", "install", "install", "bench"]
    for line in device:
        done = run_line(layout, line)
        assert done.returncode == 0, (line, done.stderr)
    assert "15f1ec4e8c5c14d9" in run_line(layout, device[0]).stdout
    assert (layout / "home" / "bundle" / "manifest.json").is_file()

    lines = examples("verify")
    assert len(lines) >= 5 and lines[0] == "puf verify photo.jpg"
    for line in lines:
        done = run_line(layout, line)
        if "shots/" in line:  # three genuine, three counterfeit
            assert done.returncode == 1, (line, done.stderr)
            verdicts = json.loads(done.stdout)["verdicts"]
            names = [Path(v["source"].split("#")[0]).name for v in verdicts]
            assert names == sorted(p.name for p in (DATA / "photos").glob("*.jpg"))
            for name, verdict in zip(names, verdicts, strict=True):
                kind = "genuine" if "_genuine_" in name else "counterfeit"
                assert verdict["verdict"] == kind, (name, verdict)
        else:
            assert done.returncode == 0, (line, done.stderr)
            if "--self-test" not in line:
                assert "genuine" in done.stdout and "B0001-0000-08" in done.stdout, (line, done.stdout)


def test_the_exit_statuses_are_in_the_help_and_the_reference():
    from edge_app.verb_verify import EXIT_STATUSES

    statuses = re.findall(r"^  (\d+) ", EXIT_STATUSES, re.M)
    assert statuses == ["0", "1", "2", "3", "70"]
    shown = subprocess.run([Path(sys.executable).parent / "puf", "verify", "--help"], capture_output=True,
                           text=True).stdout
    assert EXIT_STATUSES in shown
    page = (ROOT / "docs" / "reference" / "exit-statuses.md").read_text()
    table = page[page.index("Exit statuses of `puf verify`"):]
    for status in statuses:
        assert re.search(rf"^\| {status} \|", table, re.M), status


def test_a_counterfeit_says_what_is_known_not_that_the_factory_never_made_it(layout):
    """A label of a pattern the bundle holds none of, and one of an enrolled pattern that
    matches nothing: both "not in this bundle's labels", as of the bundle's date."""
    done = puf(layout, "verify", "shots/0005_held_out_B0001-0001-10.jpg", "shots/0006_other_film_B0001-0000-05.jpg",
               "--bundle", "bundles/b1", "--trusted-keys", "keys", "--json")
    assert done.returncode == 1, done.stderr
    reasons = [v["reason"] for v in json.loads(done.stdout)["verdicts"]]
    assert [r.split(":")[0] for r in reasons] == ["not in this bundle's labels (updated 2026-11-30)"] * 2
    assert "none of pattern 2" in reasons[0] and "best match scores 0.1" in reasons[1]


def test_trusting_a_key_refuses_what_is_not_one_and_writes_nothing(layout):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate()
    (layout / "other").mkdir()
    (layout / "other" / "factory.pub").write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (layout / "factory.key").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (layout / "photo.pub").write_bytes((layout / "photo.jpg").read_bytes()[:2000])
    (layout / "rsa.pub").write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (layout / "huge.pub").write_bytes(b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 100_000)
    for path, says in (("factory.key", "is a private key"), ("photo.pub", "is not a PEM public key"),
                       ("rsa.pub", "is not an Ed25519 public key"), ("huge.pub", "is not a public key"),
                       ("missing.pub", "cannot read the public key")):
        done = puf(layout, "device", "trust", path)
        assert done.returncode == 2 and says in done.stderr, (path, done.stderr)
        assert not trusted_dir(layout).exists(), path
    assert puf(layout, "device", "trust", "keys/factory.pub").returncode == 0
    clash = puf(layout, "device", "trust", "other/factory.pub")  # another key under a name already trusted
    assert clash.returncode == 2 and "another key is already trusted as" in clash.stderr
    assert (trusted_dir(layout) / "factory.pub").read_bytes() == (layout / "keys" / "factory.pub").read_bytes()
    again = puf(layout, "device", "trust", "keys/factory.pub", "--json")
    assert json.loads(again.stdout) == {"action": "trust", "key_id": KEY_ID, "added": False, "root": False,
                                        "path": str(trusted_dir(layout) / "factory.pub")}
    assert [p.name for p in trusted_dir(layout).iterdir()] == ["factory.pub"]


def test_installing_checks_the_bundle_and_a_refused_one_changes_nothing(layout):
    untrusted = puf(layout, "device", "install", "bundles/b1")  # no key trusted yet
    assert untrusted.returncode == 2 and "puf device trust" in untrusted.stderr
    assert "--" not in untrusted.stderr.split("error:")[1]  # no option of another verb named
    assert not (layout / "home" / "bundle").exists()
    assert puf(layout, "device", "trust", "keys/factory.pub").returncode == 0
    tampered = layout / "bundles" / "tampered"
    shutil.copytree(layout / "bundles" / "b1", tampered)
    ids = next((tampered / "shards").glob("*.ids.npy"))
    ids.write_bytes(ids.read_bytes().replace(b"B0001-0000", b"B0001-0009", 1))
    refused = puf(layout, "device", "install", tampered)
    assert refused.returncode == 2 and f"shards/{ids.name}" in refused.stderr, refused.stderr
    assert not (layout / "home" / "bundle").exists()
    assert puf(layout, "device", "install", "bundles/b1").returncode == 0
    replay = puf(layout, "device", "install", "bundles/b1")  # the same sequence again: refused, unless on purpose
    assert replay.returncode == 2 and "sequence 1" in replay.stderr
    assert puf(layout, "verify", "photo.jpg").returncode == 0


def test_the_self_test_passes_and_never_trusts_its_key_on_the_device(layout):
    done = puf(layout, "verify", "--self-test", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and report["signed_by"] == KEY_ID
    assert [(c["expected"], c["passed"]) for c in report["checks"]] == [("genuine", True), ("counterfeit", True),
                                                                        ("counterfeit", True)]
    assert not trusted_dir(layout).exists() and not (layout / "home" / "trusted_keys").exists()
    # its bundle is signed by a key the device does not trust: it can never be installed
    (layout / "other").mkdir()
    shutil.copy(DATA / "photos" / GENUINE, layout / "other")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    trusted_dir(layout).mkdir(parents=True)
    (trusted_dir(layout) / "mine.pub").write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    from edge_app.self_test import SELFTEST

    refused = puf(layout, "device", "install", SELFTEST / "bundle")
    assert refused.returncode == 2 and f"signed by key {KEY_ID}, which this device does not trust" in refused.stderr
    mixed = puf(layout, "verify", "--self-test", "photo.jpg")
    assert mixed.returncode == 2 and "give it alone" in mixed.stderr
    nothing = puf(layout, "verify")
    assert nothing.returncode == 2 and "--self-test" in nothing.stderr


def test_a_self_test_whose_photo_gives_another_verdict_fails(tmp_path):
    """The self-test compares, and says which photo went wrong: here a photo named genuine
    that shows a never-enrolled label."""
    from edge_app.errors import PufError
    from edge_app.self_test import SELFTEST, self_test

    copy = tmp_path / "selftest"
    shutil.copytree(SELFTEST, copy)
    held_out = copy / "photos" / "0005_held_out_B0001-0001-10.jpg"
    held_out.rename(copy / "photos" / "0005_genuine_B0001-0001-10.jpg")
    checks, _ = self_test(copy)
    assert [c.passed for c in checks] == [True, False, True]
    shutil.rmtree(copy / "bundle")
    with pytest.raises(PufError, match="missing"):
        self_test(copy)


def test_the_app_tells_an_inspector_what_to_do_on_a_device_that_trusts_no_key(tmp_path, monkeypatch):
    """No key trusted: the app's words name no command-line option and no file to edit, in
    English and German; installing from a folder is refused in the same words."""
    from edge_app.app.i18n import set_language
    from edge_app.app.inspection import Inspector
    from edge_app.device_store import DeviceStore
    from edge_app.errors import PufError

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("PUF_TRUSTED_KEYS", raising=False)
    inspector = Inspector(DeviceStore(tmp_path / "home"))
    try:
        for language, words in (("en", "Ask whoever looks after the device"), ("de", "zuständige Person")):
            set_language(language)
            status = inspector.open()
            assert not status.ready and words in status.problem_text()
            assert "--" not in status.problem_text() and "puf " not in status.problem_text()
            with pytest.raises(PufError, match=words):
                inspector.install(DATA / "bundle")
    finally:
        set_language("en")
    assert DeviceStore(tmp_path / "home").bundle_path() is None
