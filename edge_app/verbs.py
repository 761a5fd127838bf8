"""How a package contributes a verb to the `puf` command.

Each package lists its verbs as entry points in the ``puf.verbs`` group; an entry point
names a :class:`Verb`. Verb modules import only the standard library at module level, so
assembling the command (and ``puf --help``) stays instant; the work is imported in `run`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec


@dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    # Modules the verb needs, and the extra that installs them: a verb whose modules
    # are missing is not offered (a device install shows only device verbs).
    needs: tuple[str, ...] = field(default_factory=tuple)
    extra: str = ""

    def available(self) -> bool:
        return all(find_spec(module) is not None for module in self.needs)


def from_module(module: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """`add_arguments` and `run` that import `module` (which defines both) only when
    called, so declaring a verb costs nothing."""
    import importlib

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(module).add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module).run(args)

    return add_arguments, run
