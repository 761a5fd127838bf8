"""What the fingerprint-store and revocation tests share: `puf` with this checkout's verbs, a
region export of the `central` fixture (tests/trainer/conftest.py), and revoking a label of
the simulated batch and verifying its photo."""

import importlib
import json
import tomllib
from pathlib import Path

import cv2
import pytest

import edge_app.cli
from tests.bundle_support import keys, sim_batch

ROOT = Path(__file__).resolve().parents[1]
SLOT = 5  # the label revoked: field 0, slot 5 of the simulated batch
OTHER = 4  # a label of the same field that stays genuine


def checkout_verbs() -> tuple[list, list]:
    """The verbs this checkout's pyproject.toml declares (the environment's installed entry
    points may be another checkout's, without export-region)."""
    points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["puf.verbs"]
    verbs = [getattr(importlib.import_module(module), attribute)
             for module, _, attribute in (point.partition(":") for point in points.values())]
    return [v for v in verbs if v.available()], [v for v in verbs if not v.available()]


def main(argv: list[str]) -> int:
    """`puf` with this checkout's verbs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edge_app.cli, "installed_verbs", checkout_verbs)
        return edge_app.cli.main(argv)


def export(base, central, region: str, out: Path, *extra: str) -> int:
    bundle, store, _ = central
    return main(["export-region", "--bundle", str(bundle), "--milvus", str(store), "--product", "tea",
                 "--region", region, "--out", str(out), "--key", str(keys(base)[0]), "--json", *extra])


def label(slot: int) -> str:
    return sim_batch().layout.label_id(0, slot)


def verdict(base, bundle: Path, tmp_path: Path, slot: int, capsys, field: int = 0) -> tuple[int, dict]:
    """`puf verify --json` of a new handheld photo of the label: its exit status and verdict."""
    image, _ = sim_batch().handheld(field, slot, 3)
    photo = tmp_path / f"f{field}s{slot}.png"
    cv2.imwrite(str(photo), image)
    capsys.readouterr()
    status = main(["verify", str(photo), "--bundle", str(bundle), "--trusted-keys", str(keys(base)[1]), "--json"])
    [found] = json.loads(capsys.readouterr().out)["verdicts"]
    return status, found


def revoke(base, bundle: Path, capsys, *argv: str) -> tuple[int, dict | str]:
    capsys.readouterr()
    status = main(["revoke", *argv, "--bundle", str(bundle), "--key", str(keys(base)[0]), "--json"])
    out = capsys.readouterr()
    return status, (json.loads(out.out) if status == 0 else out.err)
