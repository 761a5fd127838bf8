"""The architecture, checked on every test run (so CI and README's test command check it too):
ruff, the dependency rule as import contracts (`[tool.importlinter]` in pyproject.toml),
mypy on the device package (`[tool.mypy]`) and the device package's cut: every `edge_app` module
is reached from the device's verbs. Each runs as its own command does, from the checkout."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's scripts, beside its python
PACKAGES = ("edge_app", "fabrication", "trainer")


def _run(command: list, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # No PYTHONPATH: the packages analysed are the ones in cwd, not whatever the environment names.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)


def test_ruff_finds_nothing():
    done = _run([BIN / "ruff", "check", "."])
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_import_contracts_hold():
    done = _run([BIN / "lint-imports", "--no-cache"])
    assert done.returncode == 0 and "4 kept, 0 broken" in done.stdout, done.stdout[-3000:]


def test_the_import_contracts_catch_each_forbidden_import_even_inside_a_function(tmp_path):
    # The real packages and contracts, copied, with one forbidden import added to a module of each.
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    added = {
        "edge_app/versions.py": "def _heavy():\n    import tensorflow  # noqa\n",  # inside a function still counts
        "edge_app/json_files.py": "from fabrication import geometry  # noqa\n",
        "fabrication/geometry.py": "import trainer.metrics  # noqa\n",
        "trainer/metrics.py": "def _ui():\n    from kivy.app import App  # noqa\n",
        "trainer/enroll.py": "def _figures():\n    from trainer.harness import paper  # noqa\n",
    }
    for name, code in added.items():
        with open(tmp_path / name, "a") as module:
            module.write("\n" + code)

    done = _run([BIN / "lint-imports", "--no-cache"], cwd=tmp_path)
    assert done.returncode == 1 and "0 kept, 4 broken" in done.stdout, done.stdout[-3000:]
    for chain in ("edge_app.versions -> tensorflow", "edge_app.json_files -> fabrication.geometry",
                  "fabrication.geometry -> trainer.metrics", "trainer.metrics -> kivy",
                  "trainer.enroll -> trainer.harness.paper"):
        assert chain in done.stdout, (chain, done.stdout[-3000:])


def test_mypy_passes_on_the_device_package():
    done = _run([sys.executable, "-m", "mypy"])
    assert done.returncode == 0, done.stdout[-5000:]


# The verbs a handheld device runs.
DEVICE_VERBS = ("verify", "app", "device", "journal")

# The `edge_app` modules the device never reaches from its verbs and `puf` itself, found by grimp
# (import-linter's graph, imports inside functions included) in the packages of the working directory.
UNREACHED = f"""
import json, tomllib, grimp
with open("pyproject.toml", "rb") as f:
    verbs = tomllib.load(f)["project"]["entry-points"]["puf.verbs"]
starts = {{"edge_app.cli"}} | {{verbs[name].partition(":")[0] for name in {DEVICE_VERBS!r}}}
graph = grimp.build_graph("edge_app", "fabrication", "trainer", include_external_packages=False)
reached = starts.union(*(graph.find_upstream_modules(start) for start in starts))
print(json.dumps(sorted(m for m in graph.modules if m.split(".")[0] == "edge_app" and m not in reached
                        and not any(r.startswith(m + ".") for r in reached))))
"""

# `edge_app` holds what the device runs and what the factory shares with it bit for bit (segmentation
# of a label, preprocessing, the bundle format, signing: all reached by the device too). Beyond that,
# only these, each with why.
NOT_RUN_BY_THE_DEVICE = {
    "edge_app.app.driver": "drives the app's screens for its tests and tools/bench_app.py (leaves the package "
                           "with issue 26's item 7)",
}


def _unreached(cwd: Path) -> list[str]:
    done = _run([sys.executable, "-c", UNREACHED], cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_device_package_holds_only_what_the_device_runs():
    unreached = _unreached(ROOT)
    assert sorted(set(unreached) - set(NOT_RUN_BY_THE_DEVICE)) == [], "not reached from the device's verbs"
    # a module the device does reach needs no excuse: the list stays short and true
    assert [m for m in NOT_RUN_BY_THE_DEVICE if m not in unreached] == []


def test_the_reachability_check_catches_a_factory_module_in_the_device_package(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "edge_app" / "batch_sheet.py").write_text("from edge_app import layout  # noqa\n")
    assert "edge_app.batch_sheet" in _unreached(tmp_path)
