"""The `puf` command itself (edge_app/cli.py): what it does around the verbs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.cli import EXIT_BROKEN_PIPE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [["--version"], ["patterns", "builtin", "--json"]],
                         ids=["version", "a-verb"])
def test_a_reader_that_closed_the_pipe_early_ends_puf_quietly(argv):
    # `puf --version | head -1`: head may leave before puf writes. Here the pipe's read end is closed
    # before puf starts, so every write finds the reader gone (with head it depends on who runs first).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "edge_app.cli", *argv], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE == 141, done.stderr
    assert done.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError" at exit


def test_a_reader_that_reads_everything_sees_the_whole_output_and_status_0():
    done = subprocess.run([sys.executable, "-m", "edge_app.cli", "--version"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("puf-labels ") and done.stdout.count("\n") >= 5


def test_a_crash_exits_70_with_its_traceback_never_a_verdict_status(monkeypatch, capsys):
    # A real input that crashes a verb is a bug, so none is at hand: a verb's work made to raise stands in.
    import dataclasses

    import edge_app.cli as cli
    from edge_app.verb_verify import verb as verify

    def crashes(args):
        raise RuntimeError("the stand-in bug")

    ready, missing = cli.installed_verbs()
    crashing = [dataclasses.replace(v, run=crashes) if v.name == "verify" else v for v in ready]
    monkeypatch.setattr(cli, "installed_verbs", lambda: (crashing, missing))
    assert cli.main(["verify", "photo.jpg"]) == cli.EXIT_CRASH == 70
    assert cli.EXIT_CRASH not in (0, 1, 2, 3, 130, EXIT_BROKEN_PIPE)  # verify's verdicts, refusals, ^C, SIGPIPE
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: the stand-in bug" in err
    last = err.strip().splitlines()[-1]
    assert last == (f"puf {verify.name}: internal error: RuntimeError: the stand-in bug "
                    "(this is a bug: please report it with the lines above)")

