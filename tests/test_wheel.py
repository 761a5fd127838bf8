"""The wheel works with no checkout: built from this checkout, installed with the device extra into
a fresh virtualenv, and run from a folder outside the checkout, it finds the shipped model and
verifies the demo's handheld photos with the same verdicts and scores as the checkout does.

Real, not mocked: pip builds and installs (the download cache serves the dependencies, pinned by
constraints.txt), so this one test takes a minute or two."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from edge_app.cli import main as puf
from edge_app.verb_verify import EXIT_COUNTERFEIT

ROOT = Path(__file__).resolve().parents[1]
SCORE_TOLERANCE = 1e-4  # the same model on the same CPU; only the install differs


def _run(command: list, cwd: Path, ok: tuple[int, ...] = (0,)) -> str:
    # The checkout must not leak into the installed venv: no PYTHONPATH, no bundle or keys from the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PUF_BUNDLE", "PUF_TRUSTED_KEYS")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode in ok, done.stderr[-3000:]
    return done.stdout


def _verb_json(argv: list[str]) -> dict:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        puf([*argv, "--json"])
    return json.loads(stdout.getvalue())


def test_the_wheel_with_the_device_extra_verifies_the_demo_photos_outside_the_checkout(tmp_path):
    demo = tmp_path / "demo"
    _verb_json(["demo", "--out", str(demo), "--fields", "2x1", "--photos", "4", "--held-out", "0.5"])
    photos = sorted((demo / "handheld").glob("*.jpg"))
    verify = ["verify", *photos, "--bundle", demo / "bundle", "--trusted-keys", demo / "trusted_keys", "--json"]
    from_checkout = _verb_json([str(a) for a in verify])["verdicts"]

    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", dist], elsewhere)
    (wheel,) = dist.glob("puf_labels-*.whl")
    _run([sys.executable, "-m", "venv", venv], elsewhere)
    _run([venv / "bin" / "pip", "install", "-q", "-c", ROOT / "constraints.txt", f"{wheel}[device]"], elsewhere)

    where = _run([venv / "bin" / "python", "-c",
                  "import edge_app, edge_app.runtime as r; b = r.default_bundle(); "
                  "r.verify_files(b, r.read_manifest(b)); print(edge_app.__file__); print(b)"], elsewhere).split()
    site = Path(where[0]).parents[1]
    assert site.name == "site-packages" and site.is_relative_to(venv)  # the installed code, not the checkout
    assert Path(where[1]) == site / "models" / "default"  # the shipped model, its checksums intact

    listed = _run([venv / "bin" / "puf", "--version"], elsewhere).splitlines()
    assert listed[0].startswith("puf-labels ") and "tflite runtime not installed" not in listed
    assert "onnxruntime not installed" in listed and not any(line.startswith("tensorflow") for line in listed)

    from_wheel = json.loads(_run([venv / "bin" / "puf", *verify], elsewhere, ok=(EXIT_COUNTERFEIT,)))["verdicts"]
    assert [v["source"] for v in from_wheel] == [v["source"] for v in from_checkout]
    for wheel_verdict, checkout_verdict in zip(from_wheel, from_checkout, strict=True):
        assert (wheel_verdict["verdict"], wheel_verdict["label_id"]) == \
            (checkout_verdict["verdict"], checkout_verdict["label_id"]), wheel_verdict["source"]
        if checkout_verdict["score"] is not None:
            assert abs(wheel_verdict["score"] - checkout_verdict["score"]) <= SCORE_TOLERANCE
    for verdict in from_wheel:  # photo names say what they show: NNNN_KIND_LABELID.jpg
        name = Path(verdict["source"].split("#")[0]).stem
        if "_genuine_" in name:
            assert verdict["verdict"] == "genuine" and verdict["label_id"] == name.split("_")[-1], verdict
        else:
            assert verdict["verdict"] != "genuine", verdict
    assert sum(v["verdict"] == "genuine" for v in from_wheel) == 4
