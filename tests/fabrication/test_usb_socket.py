"""The galvo board served on a socket (`puf etch --board-socket`): the driver over it, a
server that goes away, and hosts or servers that break the framing."""

import errno
import socket
import struct
import threading

import pytest

from edge_app.cli import main as puf
from fabrication.gcode import MachineFrame
from fabrication.laser import LaserJobStopped
from fabrication.sim.galvo_board import SimulatedGalvoHead, SimulatedLmcBoard
from fabrication.usb_socket import UsbSocketDevice, UsbSocketServer
from tests.batch_support import LABELS, connect, make_job, make_layout, marked_labels, write_batch


def test_the_driver_marks_the_whole_job_through_the_socket(tmp_path):
    lines = make_job(LABELS)
    board = SimulatedLmcBoard()
    with UsbSocketServer(board, tmp_path / "board.sock"):
        laser, film = connect(UsbSocketDevice(str(tmp_path / "board.sock")), lines)
        board.on_mark = SimulatedGalvoHead(film, laser.plan(lines).lens, laser.settings.power, MachineFrame()).mark
        laser.run_job(lines)
        laser.close()
    assert all(count > 0 for count in marked_labels(film, make_layout(LABELS)))
    assert not board.beam_enabled and board.lists_run == LABELS


def test_a_server_that_goes_away_mid_job_is_a_dropped_connection(tmp_path):
    lines = make_job(LABELS)
    server = UsbSocketServer(SimulatedLmcBoard(), tmp_path / "board.sock")
    laser, _ = connect(UsbSocketDevice(str(tmp_path / "board.sock")), lines)
    units = laser.plan(lines).units

    def unplug(line: int) -> None:
        if line == units[1].line:
            server.close()

    with pytest.raises(LaserJobStopped) as stopped:
        laser.run_job(lines, on_send=unplug)
    assert "USB connection dropped" in str(stopped.value) and units[1].label in str(stopped.value)
    assert "switch the laser off at the machine" in stopped.value.laser_state
    laser.close()


def test_addresses_that_lead_nowhere_are_clear_errors(tmp_path, capsys):
    write_batch(tmp_path, make_job(1), make_layout(1))
    etch = ["etch", str(tmp_path), "--laser", "galvo", "--board-socket"]
    assert puf([*etch, str(tmp_path / "none.sock")]) == 2
    assert "cannot connect to the board served at" in capsys.readouterr().err
    assert puf([*etch, "no-port-here"]) == 2
    assert "neither a Unix socket's path nor HOST:PORT" in capsys.readouterr().err
    assert puf(["etch", str(tmp_path), "--board-socket", str(tmp_path / "none.sock")]) == 2
    assert "--board a galvo board's" in capsys.readouterr().err


def test_a_host_that_breaks_the_framing_is_dropped_and_the_next_one_served(tmp_path):
    path = tmp_path / "board.sock"
    with UsbSocketServer(SimulatedLmcBoard(), path):
        rogue = socket.socket(socket.AF_UNIX)
        rogue.connect(str(path))
        rogue.sendall(struct.pack("<BBIi", 1, 2, 1 << 31, 100))  # a 2 GB write
        assert rogue.recv(16) == b""  # dropped, nothing read into memory
        rogue.close()
        device = UsbSocketDevice(str(path))
        with pytest.raises(OSError) as error:
            device.write(0x05, b"x" * 12)  # the board's own error comes back as its errno
        assert error.value.errno == errno.EINVAL
        assert device.write(0x02, b"\0" * 12) == 12 and len(device.read(0x88, 8)) == 8
        device.close()


def test_a_server_that_answers_more_than_was_asked_is_an_io_error(tmp_path):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "liar.sock"))
    listener.listen(1)

    def lie() -> None:
        host, _ = listener.accept()
        host.recv(64)
        host.sendall(struct.pack("<iI", 0, 4096))
        host.close()

    thread = threading.Thread(target=lie)
    thread.start()
    device = UsbSocketDevice(str(tmp_path / "liar.sock"))
    with pytest.raises(OSError) as error:
        device.read(0x88, 8)
    assert error.value.errno == errno.EIO
    device.close()
    thread.join()
    listener.close()
