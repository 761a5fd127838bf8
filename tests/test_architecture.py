"""The architecture, checked on every test run (so CI and README's test command check it too):
ruff, the dependency rule as import contracts (`[tool.importlinter]` in pyproject.toml) and
mypy on all three packages (`[tool.mypy]`). Each runs as its own command does, from the checkout."""

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


def _planted(tmp_path: Path, added: dict[str, str]) -> Path:
    """The real packages and pyproject.toml, copied into `tmp_path`, with `added` code at the end
    of the modules it names."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for name, code in added.items():
        with open(tmp_path / name, "a") as module:
            module.write("\n" + code)
    return tmp_path


def test_the_import_contracts_catch_each_forbidden_import_even_inside_a_function(tmp_path):
    # The real packages and contracts, copied, with one forbidden import added to a module of each.
    added = {
        "edge_app/versions.py": "def _heavy():\n    import tensorflow  # noqa\n",  # inside a function still counts
        "edge_app/json_files.py": "from fabrication import geometry  # noqa\n",
        "fabrication/geometry.py": "import trainer.metrics  # noqa\n",
        "trainer/metrics.py": "def _ui():\n    from kivy.app import App  # noqa\n",
        "trainer/enroll.py": "def _figures():\n    from trainer.harness import paper  # noqa\n",
    }
    done = _run([BIN / "lint-imports", "--no-cache"], cwd=_planted(tmp_path, added))
    assert done.returncode == 1 and "0 kept, 4 broken" in done.stdout, done.stdout[-3000:]
    for chain in ("edge_app.versions -> tensorflow", "edge_app.json_files -> fabrication.geometry",
                  "fabrication.geometry -> trainer.metrics", "trainer.metrics -> kivy",
                  "trainer.enroll -> trainer.harness.paper"):
        assert chain in done.stdout, (chain, done.stdout[-3000:])


def test_mypy_passes_on_all_three_packages():
    done = _run([sys.executable, "-m", "mypy"])
    assert done.returncode == 0, done.stdout[-5000:]
    assert f"in {sum(1 for p in PACKAGES for _ in (ROOT / p).rglob('*.py'))} source files" in done.stdout, \
        done.stdout[-2000:]


def test_mypy_catches_a_type_error_planted_in_each_package(tmp_path):
    # The real packages and [tool.mypy], copied, with one wrong type added to a module of each: the
    # kinds the packages had (an Optional used as a value, a default of the wrong type).
    added = {
        "edge_app/versions.py": "def _planted(text: str | None) -> int:\n    return len(text)\n",
        "fabrication/geometry.py": "def _planted(ids: list[str] = ()) -> None:\n    pass\n",
        "trainer/metrics.py": "def _planted(found: dict | None) -> object:\n    return found.get('x')\n",
    }
    done = _run([sys.executable, "-m", "mypy", "--cache-dir", tmp_path / ".mypy_cache"], cwd=_planted(tmp_path, added))
    assert done.returncode == 1 and "Found 3 errors in 3 files" in done.stdout, done.stdout[-3000:]
    for name in added:
        assert f"{name}:" in done.stdout, (name, done.stdout[-3000:])
