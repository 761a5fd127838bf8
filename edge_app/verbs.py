"""How a package contributes a verb to the `puf` command, and what a verb needs installed.

The convention: one module per verb, ``PACKAGE/verb_NAME.py``, holding the verb's
arguments (`add_arguments`), its work (`run`) and its declaration (``verb = Verb(...)``),
named by an entry point in the ``puf.verbs`` group of pyproject.toml. Verb modules import
only the standard library at module level, so assembling the command (and ``puf --help``)
stays instant; the work is imported in `run`.

A verb names the extras its work imports; the modules it needs come from one table,
`EXTRAS`, which mirrors pyproject.toml's optional dependencies (tests/test_verbs.py holds
the two equal, and runs each verb with only its extras importable), so a device install
offers only the device's verbs and a missing extra is named by the ``pip install`` line
that installs it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec

# pyproject.toml's [project.optional-dependencies], distribution -> top-level module
# (the meta extras `all` and `dev` install no verb of their own). The core dependencies
# (numpy, opencv, tqdm) are always installed.
EXTRAS: dict[str, dict[str, str]] = {
    "device": {"faiss-cpu": "faiss", "ai-edge-litert": "ai_edge_litert", "cryptography": "cryptography",
               "kivy": "kivy"},
    "pi": {"picamera2": "picamera2", "gpiozero": "gpiozero"},
    "factory": {"ezdxf": "ezdxf", "pyserial": "serial", "tifffile": "tifffile", "hershey-fonts": "HersheyFonts",
                "useq-schema": "useq", "matplotlib": "matplotlib"},
    "microscope": {"pymmcore-plus": "pymmcore_plus", "ome-types": "ome_types"},
    "galvo": {"galvoplotter": "galvo"},
    "trainer": {"tensorflow-cpu": "tensorflow", "onnx": "onnx", "tf2onnx": "tf2onnx", "onnxruntime": "onnxruntime"},
    "central": {"sqlalchemy": "sqlalchemy", "psycopg": "psycopg", "cryptography": "cryptography",
                "pymilvus": "pymilvus", "milvus-lite": "milvus_lite"},
}


@dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    # The extras the verb's work imports: a verb whose modules are missing is not offered.
    extras: tuple[str, ...] = ()
    # Its place in `puf --help`, in the order of the line: factory 1x, trainer 2x, device 3x,
    # the whole line 4x.
    rank: int = 99

    def __post_init__(self) -> None:
        unknown = [extra for extra in self.extras if extra not in EXTRAS]
        if unknown:
            raise ValueError(f"verb {self.name!r} names extras that pyproject.toml does not define: {unknown}")

    @property
    def needs(self) -> tuple[str, ...]:
        """The top-level modules of the verb's extras."""
        return tuple(module for extra in self.extras for module in EXTRAS[extra].values())

    @property
    def install(self) -> str:
        """The command that installs what the verb needs."""
        return f"pip install 'puf-labels[{','.join(self.extras)}]'"

    def available(self) -> bool:
        return all(find_spec(module) is not None for module in self.needs)


def print_report(report: dict, as_json: bool, describe: Callable[[dict], str]) -> int:
    """A verb's report on stdout: JSON for programs (``--json``; names such as a Chinese
    glyph's kept as they are), else `describe`'s text for people. Returns the exit status, 0."""
    print(json.dumps(report, indent=1, ensure_ascii=False) if as_json else describe(report))
    return 0

