"""Nothing is signed that the factory did not mean (issue 22, item 1): a manifest dressed as
fresh from `puf export`, a raised sequence, a doctored `puf export-region` source or target are
each refused by every verb that signs, nothing is written, nothing signed, and the doctored
bundle never reaches a device."""

import json
import shutil
from pathlib import Path

import pytest

import edge_app.cli
from edge_app.device_store import DeviceStore
from edge_app.errors import PufError
from edge_app.folder_swap import aside_of
from tests.bundle_support import enroll_crops, enrolled_bundle, keys, model_bundle
from tests.store_support import checkout_verbs
from trainer.enroll import enroll
from trainer.export_record import record_export
from trainer.keys import highest_signed, load_private_key, record_path


@pytest.fixture(autouse=True)
def no_default_trusted_keys(monkeypatch, tmp_path):
    """Only the keys a test names are trusted, not those of the machine running it."""
    monkeypatch.setenv("PUF_TRUSTED_KEYS", str(tmp_path / "no_trusted_keys"))


def main(argv: list[str]) -> int:
    """`puf` with this checkout's verbs (export-region among them)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edge_app.cli, "installed_verbs", checkout_verbs)
        return edge_app.cli.main(argv)


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def contents(folder: Path) -> dict:
    """Every file under `folder` with its bytes (but bundle lock files)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def dress_as_fresh(bundle: Path, sequence: int = 1000) -> None:
    """The attack of the issue: threshold 0.05, signature null, the shards and their files
    dropped, the sequence raised: what `puf export` writes, to the eye."""
    data = manifest(bundle)
    data["decision"]["threshold"] = 0.05
    data["signature"] = None
    data["shards"] = None
    data["sequence"] = sequence
    data["files"] = {name: entry for name, entry in data["files"].items() if not name.startswith("shards/")}
    shutil.rmtree(bundle / "shards", ignore_errors=True)
    (bundle / "manifest.json").write_text(json.dumps(data, indent=1))


def never_installed(bundle: Path, base, tmp_path: Path) -> None:
    with pytest.raises(PufError, match="not signed|no enrolled labels"):
        DeviceStore(tmp_path / "device").install_bundle(bundle, keys(base)[1])
    assert not (tmp_path / "device" / "bundle").exists()


def signing_verbs(base, bundle: Path, key_path: Path | None = None) -> list[list[str]]:
    key = ["--key", str(key_path or keys(base)[0])]
    return [["enroll", "--bundle", str(bundle), "--labels", str(enroll_crops(base)), *key],
            ["evaluate", "--bundle", str(bundle), "--queries", str(enroll_crops(base)), "--far", "0.02", *key]]


@pytest.mark.parametrize("start", ["signed", "exported"])
def test_a_manifest_dressed_as_fresh_from_export_is_never_signed(base, tmp_path, capsys, start):
    site = tmp_path / "site"
    if start == "signed":
        bundle = enrolled_bundle(base, site / "bundle")
    else:
        bundle = Path(shutil.copytree(model_bundle(base), site / "bundle"))
    dress_as_fresh(bundle)
    before, record = contents(site), highest_signed(load_private_key(keys(base)[0]))
    for argv in signing_verbs(base, bundle):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "not a manifest puf export wrote on this account" in err and "Traceback" not in err
        assert contents(site) == before
    assert highest_signed(load_private_key(keys(base)[0])) == record
    assert manifest(bundle)["signature"] is None
    never_installed(bundle, base, tmp_path)


def test_a_raised_sequence_is_never_signed_even_from_a_real_export(base, tmp_path, capsys):
    """An export over a bundle doctored to sequence 1000 counts up from it, and is recorded as
    exported: the signing key's record is what stops it."""
    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "site" / "bundle"))
    data = manifest(bundle)
    data["sequence"] = 1000
    (bundle / "manifest.json").write_text(json.dumps(data, indent=1))
    record_export(data, bundle)
    before, record = contents(bundle.parent), highest_signed(load_private_key(keys(base)[0]))
    assert main(signing_verbs(base, bundle)[0]) == 2
    err = capsys.readouterr().err
    assert "sequence 1001 is more than one above" in err and record_path(keys(base)[0]).name in err
    assert contents(bundle.parent) == before
    assert highest_signed(load_private_key(keys(base)[0])) == record < 1000
    never_installed(bundle, base, tmp_path)


def test_the_shipped_model_is_signed_first_as_shipped_and_never_edited(base, tmp_path):
    """The model shipped with puf needs no record of an export; an edited copy is refused."""
    from edge_app.bundle_format import Manifest
    from edge_app.runtime import shipped_bundle
    from trainer.keys import check_before_signing

    key = load_private_key(keys(base)[0])
    copy = Path(shutil.copytree(shipped_bundle(), tmp_path / "bundle"))
    assert check_before_signing(Manifest.read(copy), key) is None  # signed for the first time
    data = manifest(copy)
    data["decision"]["threshold"] = 0.05
    (copy / "manifest.json").write_text(json.dumps(data, indent=1))
    with pytest.raises(PufError, match="not a manifest puf export wrote on this account"):
        check_before_signing(Manifest.read(copy), key)


def test_each_signing_raises_the_keys_record_by_one(base, tmp_path):
    key = load_private_key(keys(base)[0])
    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "bundle"))
    for sequence in (1, 2):
        assert main(signing_verbs(base, bundle)[0] + ["--json"]) == 0
        assert manifest(bundle)["sequence"] == sequence
        assert highest_signed(key) >= sequence
    record = json.loads(record_path(keys(base)[0]).read_text())
    assert record["key_id"] == key.key_id


def test_a_signing_record_of_another_key_or_junk_signs_nothing(base, tmp_path):
    from trainer.keys import generate_keypair

    private, _, _ = generate_keypair(tmp_path / "keys" / "k")
    other, _, _ = generate_keypair(tmp_path / "keys" / "other")
    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "site" / "bundle"))
    before = contents(bundle.parent)
    for junk, message in ((record_path(other).read_text(), "belongs to key"), ("[1, 2", "cannot read the signing"),
                          ('{"highest_sequence": -3}', "not a record")):
        record_path(private).write_text(junk)
        with pytest.raises(PufError, match=message):
            enroll(bundle, enroll_crops(base), load_private_key(private), progress=False)
        assert contents(bundle.parent) == before


def test_a_private_key_readable_by_others_is_refused_by_every_verb_that_signs(base, tmp_path, capsys):
    key = tmp_path / "open.key"
    shutil.copy(keys(base)[0], key)
    key.chmod(0o644)
    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "site" / "bundle"))
    before = contents(bundle.parent)
    for argv in [*signing_verbs(base, bundle, key),
                 ["export-region", "--bundle", str(bundle), "--milvus", str(tmp_path / "fp.db"), "--region", "eu",
                  "--out", str(tmp_path / "eu"), "--key", str(key)]]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert f"permissions 0644 for the signing key {key} are too open" in capsys.readouterr().err
    assert contents(bundle.parent) == before and not (tmp_path / "eu").exists()


# ---- puf export-region: a doctored source, a doctored bundle it replaces -----------------------


@pytest.fixture(scope="module")
def store(base, tmp_path_factory) -> Path:
    """A Milvus Lite store holding the fingerprints of field 0 for tea/eu (`puf enroll --milvus`)."""
    root = tmp_path_factory.mktemp("laundering_store")
    bundle = Path(shutil.copytree(model_bundle(base), root / "factory"))
    assert main(["enroll", "--bundle", str(bundle), "--labels", str(enroll_crops(base)), "--key",
                 str(keys(base)[0]), "--milvus", str(root / "fp.db"), "--region", "eu", "--json"]) == 0
    return root / "fp.db"


def export_region(base, source: Path, store: Path, out: Path, key: Path | None = None) -> list[str]:
    return ["export-region", "--bundle", str(source), "--milvus", str(store), "--region", "eu", "--out", str(out),
            "--key", str(key or keys(base)[0]), "--trusted-keys", str(keys(base)[1])]


def test_export_region_never_signs_a_doctored_source(base, store, tmp_path, capsys):
    source = enrolled_bundle(base, tmp_path / "site" / "source")
    dress_as_fresh(source, sequence=5000)
    before = contents(tmp_path / "site")
    out = tmp_path / "eu"
    assert main(export_region(base, source, store, out)) == 2
    assert "not a manifest puf export wrote on this account" in capsys.readouterr().err
    assert contents(tmp_path / "site") == before and not out.exists()


def test_export_region_never_counts_up_from_a_doctored_bundle_it_replaces(base, store, tmp_path, capsys):
    from trainer.keys import generate_keypair

    key, _, _ = generate_keypair(tmp_path / "keys" / "region")
    source = enrolled_bundle(base, tmp_path / "source")
    out = tmp_path / "eu"
    assert main(export_region(base, source, store, out, key)) == 0
    record_path(key).unlink()  # as for a key from before records: the bundle it signed counts
    assert main(export_region(base, source, store, out, key)) == 0
    good = manifest(out)
    data = dict(good, sequence=5000)
    (out / "manifest.json").write_text(json.dumps(data, indent=1))  # the target a device would be fed next
    before = contents(out)
    capsys.readouterr()
    assert main(export_region(base, source, store, out, key)) == 2
    assert "sequence 5001 is more than one above" in capsys.readouterr().err
    assert contents(out) == before and not aside_of(out).exists()
