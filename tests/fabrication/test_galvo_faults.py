"""kill -9 of `puf etch --laser galvo` at seeded random moments, against the simulated LMC
board served on a Unix socket by this test process (`--board-socket`): like a board on a USB
cable, it outlives every kill of the host and runs to its end the list it was given. After
the kills and a resume to the end, no mark is made twice and none is missing but those of
the labels the resume names for inspection (at most one a kill: a label whose list was begun
and which the mirrors' position cannot tell finished or not begun)."""

import json
from collections import Counter
from functools import partial

from galvo import consts as op

from fabrication.galvo import GalvoSettings, LensField, plan_job
from fabrication.laser_power import PowerCalibration
from fabrication.lmc import unpack
from fabrication.sim.galvo_board import SimulatedLmcBoard
from fabrication.usb_socket import UsbSocketServer
from tests.batch_support import make_job, make_layout, write_batch
from tests.faults import kill_moments, kill_then_finish, puf_command, timed_run

SEED = 16
KILLS = 20
LABELS = 8
# Wall seconds per simulated second: a label's list takes about 7 ms at the library's speeds
# and delays, so the 8 labels keep the board busy for about 2 s, as long as the host's start.
TIME_SCALE = 40.0


def label_of_mark(lines: list[str]) -> dict[tuple[int, int], str]:
    """The label each mark's end point (galvo bits) belongs to, from the job's own lists."""
    job = plan_job(lines, GalvoSettings(), LensField(), PowerCalibration().mw_for_s)
    return {(c[1], c[2]): unit.label for unit in job.units
            for c in unpack(b"".join(unit.commands)) if c[0] == op.listMarkTo}


def etch(batch, socket_path) -> list[str]:
    """`puf etch --laser galvo` of the batch on the served board: resumed once an etch began."""
    resume = ["--resume"] if (batch / "laser" / "etch_state.json").exists() else []
    return puf_command("etch", str(batch), "--laser", "galvo", "--board-socket", str(socket_path), *resume)


def board(socket_path) -> tuple[UsbSocketServer, list[tuple[int, ...]]]:
    marks: list[tuple[int, ...]] = []
    device = SimulatedLmcBoard(lambda *mark: marks.append(mark), time_scale=TIME_SCALE)
    return UsbSocketServer(device, socket_path), marks


def test_kill_9_of_galvo_etch_marks_nothing_twice_and_names_what_it_skips(tmp_path):
    lines = make_job(LABELS)
    labels = label_of_mark(lines)
    log = tmp_path / "etch.log"
    socket_path = tmp_path / "board.sock"

    clean = tmp_path / "clean"
    write_batch(clean, lines, make_layout(LABELS))
    server, marks = board(socket_path)
    with server:
        longest = timed_run(etch(clean, socket_path), log)
    expected = Counter(marks)  # the uninterrupted run
    assert set(labels) == {mark[2:4] for mark in expected} and len(set(labels.values())) == LABELS

    moments = iter(kill_moments(SEED, 5 * KILLS, longest))  # runs that end first use some
    kills = rounds = 0
    while kills < KILLS:  # a round: kill and resume until its job ends, then check it
        rounds += 1
        batch = tmp_path / f"round{rounds}"
        write_batch(batch, lines, make_layout(LABELS))
        server, marks = board(socket_path)
        with server:
            killed_here, finish = kill_then_finish(partial(etch, batch, socket_path), moments, KILLS - kills, log)
            kills += killed_here
            assert not server.device.beam_enabled and not server.device.busy
        state = json.loads((batch / "laser" / "etch_state.json").read_text())
        assert state["status"] == "done"
        counts = Counter(marks)
        assert [mark for mark, n in counts.items() if n > expected[mark]] == []  # nothing twice
        named = {entry["label"] for entry in state["uncertain"]}
        assert len(state["uncertain"]) <= killed_here
        missed = {labels[mark[2:4]] for mark in expected if counts[mark] < expected[mark]}
        assert missed <= named, state  # only a label the resume named may be missing marks
        for label in named:
            assert f"inspect label {label}" in finish.stdout
    assert kills == KILLS
