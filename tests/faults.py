"""The fault harness: run a real `puf` verb and kill -9 it (with every process it started)
at seeded random moments, the way a power cut or the OOM killer would.

Used by the tests of the verbs that must survive a kill at any moment (enroll, segment,
photograph, etch): each kills a run several times, resumes it, and compares what is left
with an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def puf_command(*args: str) -> list[str]:
    """The command line of `puf ARGS` run from this checkout's code."""
    return [sys.executable, "-m", "edge_app.cli", *args]


def limited(command: list[str], limit: str, size: int) -> list[str]:
    """`command` run under the resource limit `limit` (a `resource.RLIMIT_*` name) of `size`:
    RLIMIT_FSIZE makes a write past `size` bytes of a file fail with EFBIG, as on a full disk
    (Python ignores SIGXFSZ, so the write raises). A launcher sets the limit and execs the
    command; a `preexec_fn` would run Python in a fork of the test process, which can abort
    once other libraries' threads run there (gRPC's, started by the Milvus tests)."""
    setup = (f"import os, resource, sys; resource.setrlimit(resource.{limit}, ({size}, {size})); "
             "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", setup, *command]


def timed_run(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run `command` to its end and return how long it took (seconds), to choose kill
    moments within it; a failed run is an error (its log says why)."""
    start = time.monotonic()
    with log.open("a") as err:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
    if done.returncode != 0:
        raise AssertionError(f"{command} failed ({done.returncode}):\n{log.read_text()[-2000:]}")
    return time.monotonic() - start


def kill_moments(seed: int, count: int, longest_s: float) -> list[float]:
    """`count` seeded moments in [0, longest_s) at which to kill a run."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, longest_s) for _ in range(count)]


def run_and_kill(command: list[str], after_s: float, log: Path, env: dict[str, str] | None = None) -> int | None:
    """Start `command` in a process group of its own and kill -9 the whole group
    `after_s` seconds later. Returns None when it was killed, or the exit code when it
    ended first. Every process of the group is gone when this returns."""
    with log.open("a") as err:
        run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env,
                               start_new_session=True)
    try:
        return run.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        _wait_group_gone(run.pid)
        return None


def kill_then_finish(command: Callable[[], list[str]], moments: Iterator[float], kills_left: int,
                     log: Path) -> tuple[int, subprocess.CompletedProcess]:
    """Kill runs of `command()` (built anew each time: a resume once a run began) at the next
    `moments` until one ends before its kill or `kills_left` kills are made, then run it to
    its end, which must succeed. Returns the kills made and that last run."""
    killed = 0
    while killed < kills_left:
        if run_and_kill(command(), next(moments), log) is not None:
            break  # it ended before its kill
        killed += 1
    finish = subprocess.run(command(), cwd=ROOT, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr[-2000:]
    return killed, finish


def _wait_group_gone(group: int, timeout_s: float = 10.0) -> None:
    """Wait until no process of `group` is left (children of a killed group are reaped
    by init a moment later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes of group {group} outlived kill -9")
