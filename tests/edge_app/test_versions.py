"""`puf --version`: the project's and the key libraries' versions, read from package metadata
without importing the heavy libraries."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

from edge_app import versions

ROOT = Path(__file__).resolve().parents[2]
WATCH = ("tensorflow", "faiss", "kivy", "onnxruntime", "ai_edge_litert")
CHILD = f"""
import atexit, sys
atexit.register(lambda: print("imported", [m for m in {WATCH!r} if m in sys.modules]))
from edge_app.cli import main
main(["--version"])
"""


def test_version_names_the_installed_libraries_and_imports_none_of_the_heavy_ones():
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"puf-labels {version('puf-labels')} (Python {sys.version.split()[0]}")
    assert f"numpy {np.__version__}" in lines
    assert f"faiss-cpu {version('faiss-cpu')}" in lines and f"ai-edge-litert {version('ai-edge-litert')}" in lines
    trainer = versions.installed("tensorflow-cpu")
    assert (f"tensorflow-cpu {trainer}" in lines) == bool(trainer)  # reported where installed, only there
    assert lines[-1] == "imported []"


def test_a_role_nothing_fills_says_so_and_an_absent_optional_library_is_left_out(monkeypatch):
    monkeypatch.setitem(versions.ROLES, "tflite runtime", ("no-such-runtime",))
    monkeypatch.setattr(versions, "OPTIONAL", ("no-such-ui", "kivy"))
    report = versions.versions()
    assert report["tflite runtime"] == "not installed" and "no-such-runtime" not in report
    assert "no-such-ui" not in report and report["kivy"] == version("kivy")
