"""The architecture, checked on every test run (so CI and README's test command check it too):
ruff, with imports at the top of modules (PLC0415); the dependency rule and each package's layers
as import contracts (`[tool.importlinter]` in pyproject.toml); mypy on all three packages
(`[tool.mypy]`); and the device package's cut: every `edge_app` module is reached from the
device's verbs. Each runs as its own command does, from the checkout, and each is shown to catch
a violation planted in a copy."""

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from edge_app.verbs import EXTRAS

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


def _contracts() -> list[dict]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def test_the_import_contracts_hold():
    done = _run([BIN / "lint-imports", "--no-cache"])
    assert done.returncode == 0 and f"{len(_contracts())} kept, 0 broken" in done.stdout, done.stdout[-3000:]


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


def _lint_imports_with(tmp_path: Path, added: dict[str, str]) -> subprocess.CompletedProcess:
    """lint-imports on the real packages and contracts, copied, with `added` code appended to modules."""
    return _run([BIN / "lint-imports", "--no-cache"], cwd=_planted(tmp_path, added))


def test_the_import_contracts_catch_each_forbidden_import_even_inside_a_function(tmp_path):
    # One forbidden import added to a module of each package.
    added = {
        "edge_app/versions.py": "def _heavy():\n    import tensorflow  # noqa\n",  # inside a function still counts
        "edge_app/json_files.py": "from fabrication import geometry  # noqa\n",
        "fabrication/geometry.py": "import trainer.metrics  # noqa\n",
        "trainer/metrics.py": "def _ui():\n    from kivy.app import App  # noqa\n",
        "trainer/enroll.py": "def _figures():\n    from trainer.harness import paper  # noqa\n",
    }
    done = _lint_imports_with(tmp_path, added)
    # the four dependency rules (and, through the chains the planted imports make, layers of each package)
    said = " ".join(done.stdout.split())  # lint-imports wraps long names
    rules = [c["name"] for c in _contracts() if c["type"] != "layers"]
    assert done.returncode == 1 and len(rules) == 4, done.stdout[-3000:]
    for rule in rules:
        assert f"{rule} BROKEN" in said, (rule, done.stdout[-3000:])
    for chain in ("edge_app.versions -> tensorflow", "edge_app.json_files -> fabrication.geometry",
                  "fabrication.geometry -> trainer.metrics", "trainer.metrics -> kivy",
                  "trainer.enroll -> trainer.harness.paper"):
        assert chain in done.stdout, (chain, done.stdout[-3000:])


def test_the_device_has_no_door_into_the_factory_not_even_for_its_journal(tmp_path):
    # `puf journal push` once imported the central registry from the device's journal verb, through
    # an ignore_imports exception; the push is the factory's now (`puf registry import --journal`).
    added = {"edge_app/verb_journal.py": "def _push():\n    from fabrication.central import CentralRegistry  # noqa\n"}
    done = _lint_imports_with(tmp_path, added)
    said = " ".join(done.stdout.split())
    assert done.returncode == 1 and "edge_app.verb_journal -> fabrication.central" in done.stdout, done.stdout[-3000:]
    assert "edge_app (the device) never imports TensorFlow, Keras, the trainer or the factory line BROKEN" in said
    assert all("ignore_imports" not in contract for contract in _contracts())


def test_the_layers_contracts_catch_an_import_circle_in_each_package(tmp_path):
    added = {
        # inside a function still counts
        "edge_app/errors.py": "def _late():\n    from edge_app import verify  # noqa\n",
        "fabrication/segmentation/slots.py": "from fabrication.segmentation import segment_field  # noqa\n",
        "trainer/metrics.py": "from trainer import train  # noqa\n",
    }
    done = _lint_imports_with(tmp_path, added)
    assert done.returncode == 1 and f"{len(_contracts()) - 3} kept, 3 broken" in done.stdout, done.stdout[-3000:]
    for broken in ("the layers of edge_app BROKEN", "the layers of fabrication.segmentation BROKEN",
                   "the layers of trainer BROKEN"):
        assert broken in done.stdout, (broken, done.stdout[-3000:])


# Inside a function, a module of the packages imports only what an extra brings (pyproject's optional
# dependencies, `edge_app.verbs.EXTRAS`, and what those bring along), or one of our modules that imports
# such a module at its top (the Kivy app, whose window is made at import, after Kivy is configured; the
# TensorFlow loss; the central registry; the simulated Micro-Manager rig; the galvo board's protocol). The
# rest is at the top, where ruff's PLC0415 looks; this holds the files it excuses to the same rule.
LAZY = {module for extra in EXTRAS.values() for module in extra.values()} | {
    "keras",  # with TensorFlow
    "tflite_runtime",  # LiteRT's older name, on a Pi
    "usb",  # pyusb, with galvoplotter
    "pydantic",  # with useq-schema
    "grpc",  # grpcio, with pymilvus (the fingerprint store reads its replies)
}


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return ["." * node.level + (node.module or "")] if isinstance(node, ast.ImportFrom) else []


def imports_inside_functions(root: Path) -> list[str]:
    """Imports inside functions of the packages' modules, but for the verbs' (which import their work when
    they run) and of what an extra brings: `path:line: module`."""
    modules = {path: ast.parse(path.read_text(encoding="utf-8"))
               for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}
    heavy = {".".join(path.relative_to(root).with_suffix("").parts) for path, tree in modules.items()
             if any(name.split(".")[0] in LAZY for node in tree.body for name in _imported(node))}
    found = []
    for path, tree in modules.items():
        if path.name.startswith("verb_"):
            continue
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                found += [f"{path.relative_to(root)}:{node.lineno}: {name}" for node in ast.walk(function)
                          for name in _imported(node) if name.split(".")[0] not in LAZY and name not in heavy]
    return found


def test_only_the_heavy_and_the_optional_are_imported_inside_functions():
    assert imports_inside_functions(ROOT) == []
    done = _run([BIN / "ruff", "check", "--select", "PLC0415", "."])
    assert done.returncode == 0, done.stdout[-3000:]


def test_imports_inside_functions_are_caught(tmp_path):
    _planted(tmp_path, {})
    lazy = "\n\ndef _late():\n    from edge_app import layout  # noqa: F401\n"
    with open(tmp_path / "fabrication" / "geometry.py", "a") as module:  # ruff's PLC0415 catches it here
        module.write(lazy)
    with open(tmp_path / "trainer" / "keys.py", "a") as module:  # excused from PLC0415 for cryptography
        module.write(lazy)
    done = _run([BIN / "ruff", "check", "--select", "PLC0415", "--output-format", "concise", "."], cwd=tmp_path)
    assert done.returncode == 1 and "fabrication/geometry.py" in done.stdout and "trainer/keys.py" not in done.stdout
    assert [line.split(":")[0] for line in imports_inside_functions(tmp_path)] == \
        ["fabrication/geometry.py", "trainer/keys.py"]


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
NOT_RUN_BY_THE_DEVICE: dict[str, str] = {}


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
    _planted(tmp_path, {})
    (tmp_path / "edge_app" / "batch_sheet.py").write_text("from edge_app import layout  # noqa\n")
    assert "edge_app.batch_sheet" in _unreached(tmp_path)


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
