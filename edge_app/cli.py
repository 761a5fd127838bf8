"""The `puf` command: assembles the verbs of every installed package (the ``puf.verbs`` entry points)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import entry_points

from edge_app.errors import PufError
from edge_app.verbs import Verb
from edge_app.versions import version_text

# What a shell reports for a program killed by SIGPIPE (128 + 13), as `yes | head -1` leaves it: the
# reader left before the output ended. Python ignores SIGPIPE, so `puf` sees a BrokenPipeError instead.
EXIT_BROKEN_PIPE = 141
# An unexpected exception, a bug (sysexits' EX_SOFTWARE): distinct from every verdict's status, so that a
# crash of `puf verify` (0 genuine, 1 counterfeit, 2 refused input, 3 unreadable) is never read as one.
EXIT_CRASH = 70


def installed_verbs() -> tuple[list[Verb], list[Verb]]:
    """The verbs whose dependencies are installed, and those that need an extra, in the
    order of the line (each verb states its `Verb.rank`)."""
    verbs = sorted((ep.load() for ep in entry_points(group="puf.verbs")), key=lambda v: (v.rank, v.name))
    return [v for v in verbs if v.available()], [v for v in verbs if not v.available()]


class _Versions(argparse.Action):
    """--version: computed only when asked, so building the parser reads no package metadata."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0,
                         help="print the versions of puf-labels, Python and the key libraries, and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `puf` parser; with `only`, the arguments of that verb alone are added (the others are
    listed by name), so that a run or its --help imports no other verb's domain modules."""
    ready, missing = installed_verbs()
    epilog = "Run 'puf VERB --help' for a verb's options and examples."
    if missing:
        lines = [f"  {v.name:<11} needs: {v.install}" for v in missing]
        epilog = "verbs not installed here:\n" + "\n".join(lines) + "\n\n" + epilog
    parser = argparse.ArgumentParser(
        prog="puf",
        description="Fluorescent PUF labels: factory line, trainer and offline verifier.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Versions)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in ready:
        verb_parser = sub.add_parser(
            verb.name,
            help=verb.summary,
            description=verb.summary,
            epilog="examples:\n" + verb.examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if only is None or verb.name == only:
            verb.add_arguments(verb_parser)
        verb_parser.set_defaults(_verb=verb)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the verb `argv` names; a reader that closes the pipe early (`puf --version | head -1`)
    ends `puf` quietly with EXIT_BROKEN_PIPE, as it would end a Unix tool, not with a traceback."""
    try:
        try:
            return _run(argv)
        finally:  # --help and --version exit inside argparse: their output is flushed here too
            sys.stdout.flush()
    except BrokenPipeError:
        # what is left in the buffer goes nowhere, so that the interpreter's own flush at exit fails no more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(argv: list[str] | None) -> int:
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=next((word for word in given if not word.startswith("-")), ""))
    args = parser.parse_args(given)
    verb: Verb = args._verb
    try:
        return int(verb.run(args) or 0)
    except PufError as error:
        print(f"puf {verb.name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"puf {verb.name}: interrupted; run it again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # the reader left: `main` ends quietly
    except Exception as error:
        traceback.print_exc()
        print(f"puf {verb.name}: internal error: {type(error).__name__}: {error} "
              "(this is a bug: please report it with the lines above)", file=sys.stderr)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
