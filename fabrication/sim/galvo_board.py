"""A simulated BJJCZ LMC galvo board at the pyusb level: the object `usb.core.find` would
return, with the `write`, `read` and `clear_halt` the driver uses, speaking the board's
packets (`fabrication.lmc`).

Single commands (12 bytes to endpoint 0x02) are answered with 8 bytes on endpoint 0x88, the
status word last; list packets (0xC00 bytes) are queued and run by ExecuteList (and, once a
list runs, as they arrive). A listMarkTo fires the beam only while the source is open
(Fiber_SetMo 1), the laser port bit is set and the mark current is above zero; it calls
``on_mark(x0, y0, x1, y1, current)`` in galvo bits. A list keeps the board BUSY for its
time (`fabrication.lmc.list_seconds`) times `time_scale` (0: at once).

Faults, on the Nth list run (counting ExecuteList from 1), after `fault_fraction` of its marks:
`halt_at_list` halts both endpoints (pyusb's EPIPE, the way a USB device reports an error)
until `clear_halt`; `drop_at_list` unplugs the board (ENODEV from then on); `stall_at_list`
stops running the list but stays BUSY until StopExecute. Errors are pyusb's own `USBError`.
"""

from __future__ import annotations

import errno
import time
from array import array
from collections.abc import Callable

import usb.core
from galvo import consts as op

from fabrication.lmc import (
    BUSY,
    CENTRE,
    COMMAND_BYTES,
    LASER_PORT_BIT,
    LIGHT_PORT_BIT,
    LIST_BYTES,
    READ_ENDPOINT,
    READY,
    WRITE_ENDPOINT,
    list_seconds,
    percent_of_current,
    reply,
    unpack,
)

MarkCallback = Callable[[int, int, int, int, int], None]


class SimulatedLmcBoard:
    """The board: bytes in on endpoint 0x02, answers out on 0x88."""

    def __init__(self, on_mark: MarkCallback | None = None, *, time_scale: float = 0.0,
                 halt_at_list: int | None = None, drop_at_list: int | None = None,
                 stall_at_list: int | None = None, fault_fraction: float = 0.5) -> None:
        self.on_mark = on_mark
        self.time_scale = time_scale
        self.halt_at_list, self.drop_at_list, self.stall_at_list = halt_at_list, drop_at_list, stall_at_list
        self.fault_fraction = fault_fraction
        self.port = 0  # output port bits (laser enable, guide light)
        self.source_open = False  # Fiber_SetMo
        self.current = 0
        self.position = (CENTRE, CENTRE)
        self.lists_run = 0  # ExecuteList received
        self.marks = 0  # marks fired
        self.light_path: list[tuple[int, int]] = []  # jump targets while the guide light was on
        self.commands: list[int] = []  # every single command's opcode, in order
        self.halted = self.dropped = self.stalled = False
        self._pending: list[bytes] = []
        self._running = False
        self._busy_until = 0.0
        self._replies: list[bytes] = []

    @property
    def beam_enabled(self) -> bool:
        """Whether the beam would fire on a mark now (source open and laser port on)."""
        return self.source_open and bool(self.port & 1 << LASER_PORT_BIT)

    @property
    def busy(self) -> bool:
        return self.stalled or time.monotonic() < self._busy_until

    # ---- pyusb's Device API ------------------------------------------------------------
    def write(self, endpoint: int, data: bytes, timeout: int | None = None) -> int:
        self._check(endpoint, WRITE_ENDPOINT)
        data = bytes(data)
        if len(data) == COMMAND_BYTES:
            self._replies.append(self._single(unpack(data)[0]))
        elif len(data) == LIST_BYTES:
            self._pending.append(data)
            if self._running and not self.busy:
                self._run_pending()
        else:
            raise usb.core.USBError("Input/Output Error", -1, errno.EIO)
        return len(data)

    def read(self, endpoint: int, size_or_buffer: int, timeout: int | None = None) -> array:
        self._check(endpoint, READ_ENDPOINT)
        if not self._replies:
            raise usb.core.USBError("Operation timed out", -7, errno.ETIMEDOUT)
        return array("B", self._replies.pop(0)[:size_or_buffer])

    def clear_halt(self, endpoint: int) -> None:
        if self.dropped:
            raise usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)
        self.halted = False
        self._replies.clear()

    def _check(self, endpoint: int, expected: int) -> None:
        if self.dropped:
            raise usb.core.USBError("No such device (it may have been disconnected)", -4, errno.ENODEV)
        if self.halted:
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE)
        if endpoint != expected:
            raise usb.core.USBError("Invalid parameter", -2, errno.EINVAL)

    # ---- the board -----------------------------------------------------------------------
    def _single(self, words: tuple[int, ...]) -> bytes:
        code = words[0]
        self.commands.append(code)
        if code == op.ExecuteList:
            self.lists_run += 1
            self._running = True
            self._run_pending()
        elif code in (op.StopExecute, op.ResetList):
            self._pending.clear()
            self._running = self.stalled = False
            self._busy_until = 0.0
        elif code == op.Fiber_SetMo:
            self.source_open = bool(words[1])
        elif code == op.WritePort:
            self.port = words[1]
        status = (BUSY if self.busy else 0) | (0 if self.stalled else READY)
        return reply(status, *self.position)

    def _run_pending(self) -> None:
        commands = [c for packet in self._pending for c in unpack(packet)]
        self._pending.clear()
        end = next((i for i, c in enumerate(commands) if c[0] == op.listEndOfList), None)
        commands = commands[:end]
        fault = next((kind for kind, at in (("halt", self.halt_at_list), ("drop", self.drop_at_list),
                                            ("stall", self.stall_at_list)) if at == self.lists_run), None)
        marks = sum(1 for c in commands if c[0] == op.listMarkTo)
        allowed = int(marks * self.fault_fraction) if fault else marks
        start = self.position
        done = 0
        for count, words in enumerate(commands):
            if words[0] == op.listMarkTo:
                if done == allowed:
                    commands = commands[:count]
                    break
                done += 1
            self._list_command(words)
        self._busy_until = time.monotonic() + list_seconds(commands, start) * self.time_scale
        if fault == "halt":
            self.halted = True
        elif fault == "drop":
            self.dropped = True
        elif fault == "stall":
            self.stalled = True
        self._running = end is None and fault is None  # more packets of this list to come

    def _list_command(self, words: tuple[int, ...]) -> None:
        code = words[0]
        if code == op.listWritePort:
            self.port = words[1]
        elif code == op.listMarkCurrent:
            self.current = words[1]
        elif code == op.listMarkTo:
            if self.beam_enabled and self.current > 0 and self.on_mark is not None:
                self.on_mark(*self.position, words[1], words[2], self.current)
                self.marks += 1
            self.position = (words[1], words[2])
        elif code == op.listJumpTo:
            self.position = (words[1], words[2])
            if self.port & 1 << LIGHT_PORT_BIT:
                self.light_path.append(self.position)


class SimulatedGalvoHead:
    """What the board's marks engrave into the simulated film: galvo bits back to the job's
    mm through an ideal lens, then to design µm; the mark current back to mW."""

    def __init__(self, film, lens, power, frame) -> None:
        self.film, self.lens, self.frame = film, lens, frame
        self._mw = lambda current: power.mw_for_s(percent_of_current(current))

    def mark(self, x0: int, y0: int, x1: int, y1: int, current: int) -> None:
        a = self.frame.to_design(*self.lens.to_mm(x0, y0))
        b = self.frame.to_design(*self.lens.to_mm(x1, y1))
        if a != b:
            self.film.add_segment(*a, *b, self._mw(current))
