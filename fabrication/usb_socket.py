"""A USB device's bulk transfers over a socket: the calls of pyusb's Device API that the galvo
driver makes (`write`, `read`, `clear_halt`), each one request and one answer.

Why: a board served this way outlives the process that drives it, as a board on a real USB
cable does. `puf etch --laser galvo --board-socket ADDRESS` drives a board served by
`UsbSocketServer` (in a test process, the simulated board, which must keep running its list
while the host is killed), with the same driver and the same checks as on USB.

ADDRESS is a Unix socket's path (anything with a ``/``) or ``HOST:PORT``. A request is
``<BBIi`` (call: 1 write, 2 read, 3 clear_halt; endpoint; a write's length or a read's size;
timeout in ms) and a write's bytes; an answer is ``<iI`` (errno, 0 for success; bytes written
or bytes that follow) and a read's bytes. A device's error comes back as its errno, so the
driver sees what pyusb would have raised; a connection that closes or fails is a device
that went away (ENODEV), a malformed answer an I/O error (EIO).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

from edge_app.errors import PufError

_REQUEST, _ANSWER = struct.Struct("<BBIi"), struct.Struct("<iI")
WRITE, READ, CLEAR_HALT = 1, 2, 3
MAX_TRANSFER = 1 << 20  # far above the board's largest packet (0xC00 bytes)


def _connect(address: str, timeout_s: float) -> socket.socket:
    target: str | tuple[str, int]
    if "/" in address:
        family, target = socket.AF_UNIX, address
    else:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise PufError(f"--board-socket {address!r} is neither a Unix socket's path nor HOST:PORT")
        family, target = socket.AF_INET, (host, int(port))
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(target)
    except OSError as error:
        sock.close()
        raise PufError(f"cannot connect to the board served at {address}: {error.strerror or error}") from None
    return sock


def _receive(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes; fewer (the peer closed) is `EOFError`."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


class UsbSocketDevice:
    """A device served at `address`, with the part of `usb.core.Device` the galvo driver uses."""

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        self.address = address
        self._sock = _connect(address, timeout_s)

    def write(self, endpoint: int, data: bytes, timeout: int | None = None) -> int:
        return self._call(WRITE, endpoint, len(data), timeout, bytes(data))[0]

    def read(self, endpoint: int, size_or_buffer: int, timeout: int | None = None) -> Sequence[int]:
        return self._call(READ, endpoint, size_or_buffer, timeout)[1]

    def clear_halt(self, endpoint: int) -> None:
        self._call(CLEAR_HALT, endpoint, 0, None)

    def close(self) -> None:
        self._sock.close()

    def _call(self, call: int, endpoint: int, size: int, timeout: int | None,
              data: bytes = b"") -> tuple[int, bytes]:
        try:
            self._sock.sendall(_REQUEST.pack(call, endpoint, size, -1 if timeout is None else timeout) + data)
            code, length = _ANSWER.unpack(_receive(self._sock, _ANSWER.size))
            if code:
                raise OSError(code, os.strerror(code))
            if call != READ:
                return length, b""
            if length > size:
                raise OSError(errno.EIO, f"the server answered {length} bytes to a read of {size}")
            return length, _receive(self._sock, length)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"no answer from the board served at {self.address}") from None
        except (EOFError, ConnectionError) as error:
            raise OSError(errno.ENODEV, f"the board served at {self.address} went away ({error or 'closed'})") from None


class UsbSocketServer:
    """Serves `device` on a Unix socket at `path`, one host at a time, in a thread; the device
    (and whatever it is running) lives on when a host disconnects or is killed."""

    def __init__(self, device, path: Path) -> None:
        self.device, self.path = device, str(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._closing = False
        self._host: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="usb-socket", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                host, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._host = host
            with host:
                try:
                    while True:
                        host.sendall(self._answer(host, *_REQUEST.unpack(_receive(host, _REQUEST.size))))
                except (EOFError, OSError):
                    continue  # the host went away (mid-request: that request never reached the device)

    def _answer(self, host: socket.socket, call: int, endpoint: int, size: int, timeout: int) -> bytes:
        if size > MAX_TRANSFER:
            raise EOFError  # not a host of ours: drop it
        data = _receive(host, size) if call == WRITE else b""
        timeout_ms = None if timeout < 0 else timeout
        try:
            if call == WRITE:
                return _ANSWER.pack(0, self.device.write(endpoint, data, timeout_ms))
            if call == READ:
                answer = bytes(self.device.read(endpoint, size, timeout_ms))
                return _ANSWER.pack(0, len(answer)) + answer
            if call == CLEAR_HALT:
                self.device.clear_halt(endpoint)
                return _ANSWER.pack(0, 0)
            return _ANSWER.pack(errno.EINVAL, 0)
        except OSError as error:
            return _ANSWER.pack(error.errno or errno.EIO, 0)

    def close(self) -> None:
        self._closing = True
        for sock in (self._listener, self._host):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> UsbSocketServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
