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
