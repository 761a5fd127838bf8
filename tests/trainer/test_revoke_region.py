"""Revocations in region exports: `puf export-region` carries a bundle's revocation list and the
central registry's (`puf registry revoke`), leaving the labels out of the region's shards, and a
device says "revoked" for them."""

import json
import shutil
from pathlib import Path

import numpy as np

from tests.bundle_support import batch_registry, sim_batch
from tests.store_support import SLOT, export, label, main, revoke, verdict


def shard_ids(bundle: Path) -> set[str]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {i for e in manifest["shards"]["classes"].values() for i in np.load(bundle / e["ids"]).astype(str)}


def registry(argv: list[str], url: str, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["registry", *argv, "--central", url, "--json"])
    out = capsys.readouterr()
    return status, out.out if status == 0 else out.err


def test_a_region_export_carries_the_bundles_revocations(base, central, tmp_path, capsys):  # noqa: F811
    factory, store, _ = central
    revoked = Path(shutil.copytree(factory, tmp_path / "factory"))
    assert revoke(base, revoked, capsys, label(SLOT), "--reason", "stolen in transit")[0] == 0
    out = tmp_path / "eu"
    assert export(base, (revoked, store, None), "eu", out) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == 11 and report["revoked"] == [label(SLOT)] == report["revoked_in_region"]
    assert label(SLOT) not in shard_ids(out)
    status, found = verdict(base, out, tmp_path, SLOT, capsys)
    assert status == 1 and found["verdict"] == "revoked" and "stolen in transit" in found["reason"]


def test_the_central_registrys_revocations_leave_a_region_export(base, central, url, tmp_path, capsys):  # noqa: F811
    factory, store, _ = central
    assert registry(["push", str(batch_registry(base, tmp_path, ("V1",))), "--factory", "f1"], url, capsys)[0] == 0
    status, said = registry(["revoke", label(SLOT), "--reason", "recalled lot"], url, capsys)
    assert status == 0 and json.loads(said) == {"revoked": [label(SLOT)], "already_revoked": []}
    status, said = registry(["revoke", "V9-0000-01"], url, capsys)  # never pushed
    assert status == 2 and "label V9-0000-01 is not in the central registry" in said
    out = tmp_path / "eu"
    assert export(base, central, "eu", out, "--central", url) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["revoked_in_region"] == [label(SLOT)] and label(SLOT) not in shard_ids(out)
    status, found = verdict(base, out, tmp_path, SLOT, capsys)
    assert status == 1 and found["verdict"] == "revoked" and "recalled lot" in found["reason"]
    assert export(base, central, "eu", out) == 0  # again, without the registry: the list it replaces is carried
    assert json.loads(capsys.readouterr().out)["revoked"] == [label(SLOT)]
    assert json.loads((out / "revoked.json").read_text())["version"] == 2
    assert verdict(base, out, tmp_path, SLOT, capsys)[1]["verdict"] == "revoked"
    us = tmp_path / "us"  # the us region holds none of the revoked labels: nothing listed
    assert export(base, central, "us", us, "--central", url) == 0
    assert json.loads(capsys.readouterr().out)["revoked"] == [] and not (us / "revoked.json").exists()
    assert sim_batch().layout.label_id(1, 0) in shard_ids(us)
