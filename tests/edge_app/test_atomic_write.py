"""The one way a file is replaced (edge_app/atomic_write.py): whole or not at all, nothing left
behind by a failed or killed writer, a private file never readable by others."""

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

from edge_app.atomic_write import replacing, write_atomic
from edge_app.errors import PufError


def test_a_write_replaces_the_file_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("old")
    write_atomic(path, "new ü")
    assert path.read_bytes() == "new ü".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_folder_that_cannot_be_written_is_a_clear_error(tmp_path):
    with pytest.raises(PufError, match=r"cannot save .*nowhere/file\.txt: No such file or directory"):
        write_atomic(tmp_path / "nowhere" / "file.txt", "text")


def test_a_private_file_is_never_readable_by_others_even_while_written(tmp_path):
    path = tmp_path / "signing.key"
    with replacing(path, mode=0o600) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # before a byte is written
        tmp.write_bytes(b"secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"secret"


def test_an_exclusive_write_never_replaces_a_file_that_is_there(tmp_path):
    path = tmp_path / "device.key"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError), replacing(path, exclusive=True) as tmp:
        tmp.write_bytes(b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["device.key"]


def test_a_killed_writers_temporary_file_goes_when_the_file_is_written_again(tmp_path):
    path = tmp_path / "crops.npz"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from edge_app.atomic_write import replacing
        with replacing({str(path)!r}, suffix=".npz") as tmp:
            tmp.write_bytes(b"half")
            print(tmp.name, flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    with writer:
        left = writer.stdout.readline().strip()
        writer.send_signal(signal.SIGKILL)
    assert left.endswith(".tmp.npz") and (tmp_path / left).exists() and not path.exists()

    alive = tmp_path / f".crops.npz.{os.getpid()}-0000.{socket.gethostname()}.tmp.npz"  # a live writer's: kept
    alive.write_bytes(b"being written")
    elsewhere = tmp_path / f".crops.npz.{writer.pid}-0000.another-host.tmp.npz"  # a shared folder's other host
    elsewhere.write_bytes(b"being written there")
    write_atomic(path, b"whole")
    assert path.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["crops.npz", alive.name, elsewhere.name])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
