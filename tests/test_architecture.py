"""The architecture, checked on every test run (so CI and README's test command check it too):
ruff, the dependency rule as import contracts (`[tool.importlinter]` in pyproject.toml) and
mypy on the device package (`[tool.mypy]`). Each runs as its own command does, from the checkout."""

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


# A file is replaced whole through edge_app/atomic_write.py only. ruff's banned-api refuses
# os.replace and os.rename (pyproject.toml); a pathlib rename, `tmp.replace(path)`, is a method
# of a value it cannot type, so this finds it by shape: .replace/.rename with one positional
# argument and no keywords (str.replace takes two, dataclasses and datetimes keywords).
RENAMES_ALLOWED = {
    "edge_app/atomic_write.py": "the one helper",
    "edge_app/folder_swap.py": "renames folders and symlinks, not files",
    "tools/arm64_check.py": "renames a finished root folder into place",
}


def _pathlib_renames(source: str) -> list[int]:
    import ast

    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("replace", "rename") and len(node.args) == 1 and not node.keywords]


def test_files_are_replaced_through_the_one_helper_only():
    found = {}
    for path in sorted(ROOT.glob("*/**/*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.split("/")[0] in (*PACKAGES, "tools") and name not in RENAMES_ALLOWED:
            lines = _pathlib_renames(path.read_text())
            if lines:
                found[name] = lines
    assert not found, f"write through edge_app.atomic_write instead: {found}"


def test_the_rename_checks_catch_a_planted_rename(tmp_path):
    planted = 'import os\nfrom pathlib import Path\n\n\ndef save(path: Path, text: str) -> None:\n' \
              '    tmp = path.with_name(path.name + ".tmp")\n    tmp.write_text(text)\n' \
              '    os.replace(tmp, path)\n    tmp.rename(path)\n    tmp.replace(path)\n'
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "planted.py").write_text(planted)

    done = _run([BIN / "ruff", "check", "--no-cache", "--select", "TID251", "--output-format", "concise", "."],
                cwd=tmp_path)
    assert done.returncode == 1 and "trainer/planted.py:8:5: TID251 `os.replace` is banned" in done.stdout, \
        done.stdout[-3000:]
    assert _pathlib_renames(planted) == [9, 10]


def test_the_complexity_limit_catches_a_planted_long_function(tmp_path):
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(16))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "fabrication").mkdir()
    (tmp_path / "fabrication" / "planted.py").write_text(f"def tangled(x: int) -> int:\n{branches}    return -1\n")

    done = _run([BIN / "ruff", "check", "--no-cache", "--output-format", "concise", "."], cwd=tmp_path)
    assert done.returncode == 1 and "fabrication/planted.py:1:5: C901 `tangled` is too complex (17 > 15)" \
        in done.stdout, done.stdout[-3000:]
