"""The verbs the demo runs, and a verb run in this process as a user types it.

The harness sits above every package, so it imports the verbs it runs instead of looking
them up among the installed ones, and the demo verb needs what they need (`EXTRAS`, derived
from their declarations). A tool that runs any verb looks it up in the installed command
(`installed`). Verb modules import only the standard library and `edge_app.verbs` at module
level, so importing them here costs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Mapping

from edge_app.cli import installed_verbs
from edge_app.errors import PufError
from edge_app.verb_verify import verb as verify
from edge_app.verbs import Verb
from fabrication.verb_design import verb as design
from fabrication.verb_etch import verb as etch
from fabrication.verb_photograph import verb as photograph
from fabrication.verb_segment import verb as segment
from trainer.verb_enroll import verb as enroll
from trainer.verb_keygen import verb as keygen

# The line in the order the demo runs it; its handheld photos then go through verify's pipeline.
LINE: dict[str, Verb] = {verb.name: verb for verb in (design, etch, photograph, segment, keygen, enroll, verify)}
EXTRAS: tuple[str, ...] = tuple(dict.fromkeys(extra for verb in LINE.values() for extra in verb.extras))


def installed() -> dict[str, Verb]:
    """Every verb the installed `puf` command offers here, by name."""
    return {verb.name: verb for verb in installed_verbs()[0]}


def run_verb(argv: list[str], ok: tuple[int, ...] = (0,), verbs: Mapping[str, Verb] = LINE) -> None:
    """Run `puf ARGV` in this process, as a user would type it: the verb `argv[0]` names,
    among `verbs` (the line's, or `installed()`), on the rest of `argv`."""
    name, *rest = argv
    if name not in verbs:
        raise PufError(f"'puf {name}' is not one of the verbs here: {', '.join(verbs)}")
    verb = verbs[name]
    parser = argparse.ArgumentParser(prog=f"puf {name}")
    verb.add_arguments(parser)
    status = verb.run(parser.parse_args(rest))
    if status not in ok:
        raise PufError(f"'puf {' '.join(argv)}' failed with status {status}")


def verb_output(argv: list[str], ok: tuple[int, ...] = (0,), verbs: Mapping[str, Verb] = LINE) -> str:
    """Run a verb (`run_verb`) and return what it printed (for its --json report)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        run_verb(argv, ok, verbs)
    return buffer.getvalue()
