"""A bundle is re-signed only over a manifest that the signing key or a trusted key signed:
an edit to a signed bundle (a threshold lowered to accept clones) is never laundered into a
valid signature by `puf enroll` or `puf evaluate --key`, and nothing is written."""

import json
import shutil
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.errors import PufError
from tests.bundle_support import enroll_crops, enrolled_bundle, keys
from trainer.bundle_write import BundleUpdate, lock_path
from trainer.enroll import enroll
from trainer.evaluation import evaluate
from trainer.keys import generate_keypair, load_private_key


@pytest.fixture(autouse=True)
def no_default_trusted_keys(monkeypatch, tmp_path):
    """Only the keys a test names are trusted, not those of the machine running it."""
    monkeypatch.setenv("PUF_TRUSTED_KEYS", str(tmp_path / "no_trusted_keys"))


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def contents(bundle: Path) -> dict:
    """Every file beside and inside the bundle, with its bytes (but its lock file: `bundle_write.bundle_lock`)."""
    return {str(p.relative_to(bundle.parent)): p.read_bytes() for p in sorted(bundle.parent.rglob("*"))
            if p.is_file() and p != lock_path(bundle)}


def edit_manifest(bundle: Path, change) -> None:
    data = manifest(bundle)
    change(data)
    (bundle / "manifest.json").write_text(json.dumps(data, indent=1))


def lower_threshold(data: dict) -> None:
    data["decision"]["threshold"] = 0.05


@pytest.fixture
def signed(base, tmp_path) -> Path:
    """A bundle with 12 labels enrolled, signed by the factory key, alone in its folder."""
    return enrolled_bundle(base, tmp_path / "site" / "bundle")


def test_enroll_refuses_to_re_sign_an_edited_manifest_and_writes_nothing(base, signed, key, capsys):
    from edge_app.cli import main

    edit_manifest(signed, lower_threshold)
    before = contents(signed)
    with pytest.raises(PufError, match="not signed: the bundle was not signed by this key or a trusted one.*"
                                       "does not match its contents"):
        enroll(signed, enroll_crops(base), key, progress=False)
    assert contents(signed) == before
    assert main(["enroll", "--bundle", str(signed), "--labels", str(enroll_crops(base)),
                 "--key", str(keys(base)[0])]) == 2
    assert "not signed" in capsys.readouterr().err
    assert contents(signed) == before


def test_evaluate_refuses_to_re_sign_an_edited_manifest_and_writes_nothing(base, signed, key):
    edit_manifest(signed, lower_threshold)
    before = contents(signed)
    with pytest.raises(PufError, match="not signed"):
        evaluate(signed, [enroll_crops(base)], far=2e-2, private_key=key, progress=False)
    assert contents(signed) == before


def test_a_bundle_update_never_signs_over_an_edited_manifest(signed, key):
    """The last line of defence, for any verb that writes a new version."""
    edit_manifest(signed, lower_threshold)
    before = contents(signed)
    with pytest.raises(PufError, match="does not match its contents"), BundleUpdate(signed) as update:
        update.manifest.decision.extra["provisional"] = True
        update.commit(key)
    assert contents(signed) == before  # no new version, no temporary folder left beside it


def test_a_bundle_signed_by_another_key_is_re_signed_only_when_that_key_is_trusted(base, signed, key, tmp_path):
    """Key rotation: the new key takes over a bundle the old key signed, once the old key is
    named as trusted; an unknown signer is refused."""
    new_private, new_public, new_id = generate_keypair(tmp_path / "keys" / "new")
    new_key = load_private_key(new_private)
    before = contents(signed)
    with pytest.raises(PufError, match="which this device does not trust"):
        enroll(signed, enroll_crops(base), new_key, progress=False)
    assert contents(signed) == before
    report = enroll(signed, enroll_crops(base), new_key, trusted_keys=keys(base)[1], progress=False)
    assert report.signed_by == new_id
    trusted = tmp_path / "trusted_new"
    trusted.mkdir()
    shutil.copy(new_public, trusted)
    assert load_bundle(signed, trusted).signer == new_id


def test_an_unsigned_bundle_is_signed_only_as_puf_export_wrote_it(base, signed, key, fresh):
    edit_manifest(signed, lambda data: data.update(signature=None))
    before = contents(signed)
    with pytest.raises(PufError, match="unsigned but already holds enrolled labels"):
        enroll(signed, enroll_crops(base), key, progress=False)
    assert contents(signed) == before
    assert manifest(fresh)["signature"] is None and not manifest(fresh)["shards"]  # straight from export
    assert enroll(fresh, enroll_crops(base), key, progress=False).signed_by
