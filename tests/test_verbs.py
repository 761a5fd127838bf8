"""The `puf` verbs: one module each, and each verb's needs as pyproject.toml's extras say.

A verb is run in a fresh interpreter where every third-party package outside the core and
the verb's extras (and what those depend on) cannot be imported, the way a role's own
install looks: the verb must be offered, build its `--help`, and for the cheap verbs do its
real work. With only the core importable, every verb that needs an extra is refused, and
`puf --help` names the extras to install.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edge_app.verbs import EXTRAS
from tests.bundle_support import enroll_crops, model_bundle, sim_batch, write_crop_folder

ROOT = Path(__file__).resolve().parents[1]
OURS = {"edge_app", "fabrication", "trainer", "tests"}
META_EXTRAS = {"all", "dev"}  # extras that only gather others, or serve the tests


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def entry_points() -> dict[str, str]:
    return pyproject()["project"]["entry-points"]["puf.verbs"]


def verb_of(name: str):
    module, _, attribute = entry_points()[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


VERBS = sorted(entry_points())

# A fresh interpreter in which the modules named in argv[1] cannot be found (find_spec gives
# None, import raises ModuleNotFoundError), then `puf ARGV[2:]`.
BLOCKED_RUN = """
import sys

BLOCKED = frozenset(sys.argv[1].split(","))
FINDERS = list(sys.meta_path)


class Gate:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        for finder in FINDERS:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None

    @staticmethod
    def find_distributions(*args, **kwargs):  # importlib.metadata asks the meta path too
        for finder in FINDERS:
            if hasattr(finder, "find_distributions"):
                yield from finder.find_distributions(*args, **kwargs)


sys.meta_path[:] = [Gate]
from edge_app.cli import main

sys.exit(main(sys.argv[2:]))
"""


def _with_dependencies(requirements: list[str]) -> set[str]:
    """The distributions `requirements` install, with everything they depend on."""
    found: set[str] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # not installed here (picamera2 off a Pi)
            continue
        for text in requires:
            dependency = Requirement(text)
            wanted = ("", *requirement.extras)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(dependency)
    return found


def blocked_modules(extras: tuple[str, ...]) -> set[str]:
    """Every installed third-party top-level module that neither the core nor `extras` brings."""
    optional = pyproject()["project"]["optional-dependencies"]
    allowed = _with_dependencies(pyproject()["project"]["dependencies"] + [r for e in extras for r in optional[e]])
    return {module for module, dists in metadata.packages_distributions().items()
            if module.isidentifier() and module not in OURS and module not in sys.stdlib_module_names
            and not any(canonicalize_name(d) in allowed for d in dists)}


def puf_with_only(extras: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess:
    blocked = blocked_modules(extras)
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, ",".join(sorted(blocked)), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)


def test_the_extras_table_is_pyprojects():
    optional = pyproject()["project"]["optional-dependencies"]
    assert set(optional) - META_EXTRAS == set(EXTRAS)
    for extra, modules in EXTRAS.items():
        assert {canonicalize_name(Requirement(r).name) for r in optional[extra]} == \
            {canonicalize_name(d) for d in modules}, extra
    installs = metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        for dist, module in modules.items():
            if extra != "pi":  # picamera2 installs only on a Raspberry Pi
                assert canonicalize_name(dist) in {canonicalize_name(d) for d in installs.get(module, [])}, \
                    f"{dist} does not install the module {module!r}"
    everything = Requirement(optional["all"][0]).extras
    assert set(EXTRAS) - {"pi"} <= everything


@pytest.mark.parametrize("name", VERBS)
def test_every_verb_is_one_module_named_for_it(name):
    package, _, rest = entry_points()[name].partition(".")
    assert package in OURS and rest == f"verb_{name.replace('-', '_')}:verb"
    verb = verb_of(name)
    assert verb.name == name and verb.add_arguments.__module__ == verb.run.__module__
    assert set(verb.extras) <= set(EXTRAS) and verb.needs == tuple(
        m for e in verb.extras for m in EXTRAS[e].values())


def test_no_two_modules_share_a_confusing_name():
    """One `cli.py` (the `puf` command); no `evaluate.py` beside `evaluation.py`."""
    files = [p.relative_to(ROOT) for package in ("edge_app", "fabrication", "trainer")
             for p in (ROOT / package).rglob("*.py")]
    assert [str(p) for p in files if p.name == "cli.py"] == ["edge_app/cli.py"]
    stems = {p.stem for p in files}
    assert not {"evaluate", "evaluation"} <= stems


def test_a_verb_is_offered_only_with_its_extras():
    done = puf_with_only((), "--help")
    assert done.returncode == 0, done.stderr
    offered, _, missing = done.stdout.partition("verbs not installed here:")
    for name in VERBS:
        verb = verb_of(name)
        if verb.extras:
            assert f"  {name:<11} needs: pip install 'puf-labels[{','.join(verb.extras)}]'" in missing
            assert f"\n    {name} " not in offered
        else:
            assert f"\n    {name} " in offered
    refused = puf_with_only((), "enroll", "--help")
    assert refused.returncode == 2 and "invalid choice: 'enroll'" in refused.stderr


@pytest.mark.parametrize("name", VERBS)
def test_a_verb_builds_with_only_its_extras(name):
    verb = verb_of(name)
    done = puf_with_only(verb.extras, name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: puf {name} ") and "examples:" in done.stdout


def _ok(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_cheap_verbs_work_with_only_their_extras(tmp_path):
    key = _ok(puf_with_only(verb_of("keygen").extras, "keygen", str(tmp_path / "factory"), "--json"))
    assert Path(key["private"]).exists() and Path(key["public"]).exists()
    patterns = _ok(puf_with_only(verb_of("patterns").extras, "patterns", "builtin", "--json"))
    assert len(patterns["glyph_names"]) == 44
    done = puf_with_only(verb_of("design").extras, "design", str(tmp_path / "B0001"), "--fields", "2x1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "B0001" / "layout.json").exists() and (tmp_path / "B0001" / "laser" / "job.gcode").exists()
    alerts = _ok(puf_with_only(verb_of("registry").extras, "registry", "alerts", "--central",
                               f"sqlite:///{tmp_path / 'central.sqlite'}", "--json"))
    assert alerts == []
    # the journal's modules load with the core alone; a missing journal is the user's error, in words
    done = puf_with_only(verb_of("journal").extras, "journal", "list", "--journal", str(tmp_path / "j.sqlite"))
    assert done.returncode == 2 and "puf journal: error: no journal at" in done.stderr, done.stderr


def test_the_bundle_verbs_work_without_tensorflow(base, tmp_path):
    """enroll and evaluate run with the device and factory extras only: TensorFlow is the
    trainer's, and neither imports it."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(model_bundle(base), bundle)
    key = _ok(puf_with_only(verb_of("keygen").extras, "keygen", str(tmp_path / "factory"), "--json"))
    for name in ("enroll", "evaluate"):
        assert "tensorflow" in blocked_modules(verb_of(name).extras)
    enrolled = _ok(puf_with_only(verb_of("enroll").extras, "enroll", "--bundle", str(bundle), "--labels",
                                 str(enroll_crops(base)), "--key", key["private"], "--json"))
    assert enrolled["labels_added"] == 12
    queries = write_crop_folder(tmp_path / "queries", sim_batch(), (0, 1), shots=0, handheld=1)
    report = _ok(puf_with_only(verb_of("evaluate").extras, "evaluate", "--bundle", str(bundle), "--queries",
                               str(queries), "--far", "2e-2", "--no-classify", "--json"))
    assert report["genuine_queries"] == 12 and report["impostor_queries"] == 12
