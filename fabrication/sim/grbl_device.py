"""A simulated GRBL 1.1 laser controller that speaks the real serial protocol.

`GrblEngine` is the controller: bytes in, bytes out, with GRBL's behaviour where the
driver depends on it. Realtime bytes (``?``, ``!``, ``~``, ctrl-X) act at once, as in
GRBL's serial interrupt; everything else goes into a 128-byte receive buffer (127
usable), and bytes that do not fit are dropped and counted, as on the real board, so a
broken flow control shows. Lines are parsed into a 15-block motion planner and answered
``ok`` or ``error:N``; motion runs in simulated time (instant by default); soft limits
raise ``ALARM:2``; ``$C`` check mode parses without moving. A G1 move with the laser on
calls ``on_burn(x0, y0, x1, y1, s)`` in machine mm, which
`fabrication.sim.laser.SimulatedLaserHead.burn` takes as it is.

The machine is built like a common laser engraver: homing with HOMING_FORCE_SET_ORIGIN,
X homing to the left (``$23=1``), so its travel is X 0..$130 and Y -$131..0 mm, and it
starts at the origin as if just homed (``locked=True`` starts it in alarm instead).

Two ways to attach a driver: `PtyGrbl` serves the engine on a pseudo-terminal that
pyserial opens like a USB port (what the tests use), and `LoopbackPort` is an
in-process object with the part of pyserial's API the driver uses (``puf etch --sim``).
"""

from __future__ import annotations

import errno
import math
import os
import re
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

BANNER = "Grbl 1.1h ['$' for help]"
VERSION = "[VER:1.1h.20190825:]"
RX_BUFFER_SIZE = 128  # GRBL's ring buffer keeps one slot free: 127 bytes usable
PLANNER_BLOCKS = 15
LINE_BUFFER_SIZE = 80

DEFAULT_SETTINGS: dict[int, float] = {
    0: 10, 1: 25, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 10: 1, 11: 0.010, 12: 0.002, 13: 0,
    20: 1, 21: 0, 22: 1, 23: 1, 24: 25.0, 25: 500.0, 26: 250, 27: 1.0,
    30: 1000, 31: 0, 32: 1,
    100: 80.0, 101: 80.0, 102: 80.0, 110: 3000.0, 111: 3000.0, 112: 500.0,
    120: 10.0, 121: 10.0, 122: 10.0, 130: 300.0, 131: 300.0, 132: 50.0,
}
_INTEGER_SETTINGS = {0, 1, 2, 3, 4, 5, 6, 10, 13, 20, 21, 22, 23, 26, 30, 31, 32}

_REALTIME = re.compile(rb"[?!~\x18\x80-\xff]")
_LINE_END = re.compile(rb"[\r\n]")
_COMMENT = re.compile(r"\([^)]*\)?|;.*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_WORD = re.compile(r"(.)([-+]?(?:\d+\.?\d*|\.\d+))?")
_UNSEEN = re.compile(r"[^!-~]")  # GRBL drops spaces and control characters
_G_GROUPS = {0: "motion", 1: "motion", 17: "plane", 20: "units", 21: "units",
             54: "wcs", 90: "distance", 91: "distance", 94: "feed_mode"}

BurnCallback = Callable[[float, float, float, float, float], None]
MoveCallback = Callable[[float, float, float, float, float | None], None]


class _GcodeError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@dataclass(frozen=True)
class _Block:
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    power: float | None  # S while the beam fires along this move, None if it is off
    seconds: float  # wall time the move takes


@dataclass
class _Modal:
    motion: int = 0
    inches: bool = False
    incremental: bool = False
    spindle: int = 5  # M3, M4 or M5
    feed: float = 0.0  # mm/min
    s: float = 0.0


class GrblEngine:
    """GRBL 1.1: receive() what the host wrote, run() the machine, read_output() the replies."""

    def __init__(
        self,
        on_burn: BurnCallback | None = None,
        *,
        settings: dict[int, float] | None = None,
        locked: bool = False,
        time_scale: float = 0.0,
        fail_at_line: int | None = None,
        fail_code: int = 20,
        drop_after_lines: int | None = None,
        on_move: MoveCallback | None = None,
    ) -> None:
        """`time_scale` is wall seconds per simulated second of motion (0: moves are
        instant). Faults for tests: the `fail_at_line`-th G-code line is answered
        ``error:<fail_code>`` and not executed; the connection drops when the
        `drop_after_lines`-th G-code line arrives (it is never answered). `on_move` hears of
        every move the machine finishes, burning or not (its S, or None with the beam off)."""
        self.on_burn, self.on_move = on_burn, on_move
        self.settings = dict(DEFAULT_SETTINGS if settings is None else settings)
        self.time_scale = time_scale
        self.fail_at_line = fail_at_line
        self.fail_code = fail_code
        self.drop_after_lines = drop_after_lines

        self.position = (0.0, 0.0, 0.0)  # machine position of the last finished move
        self.gcode_lines = 0  # G-code lines received so far
        self.rx_high_water = 0  # most bytes ever waiting in the receive buffer
        self.rx_dropped = 0  # bytes lost because the host overflowed the buffer
        self.dropped = False  # the connection is gone
        self.state = "Alarm" if locked else "Idle"

        self._rx = bytearray()
        self._out = bytearray()
        self._modal = _Modal()
        self._planner: deque[_Block] = deque()
        self._planned_end = self.position
        self._block_started = 0.0
        self._moving = False  # the head block is executing
        self._holding = False  # a feed hold is active
        self._await_reset = False  # after a critical alarm only ctrl-X is obeyed
        self._emit("", BANNER)
        if locked:
            self._emit("[MSG:'$H'|'$X' to unlock]")

    # ---- the serial side ---------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes from the host, in order; realtime commands act before any line."""
        start = 0
        for match in _REALTIME.finditer(data):
            self._buffer(data[start : match.start()])
            self._realtime(match.group())
            start = match.end()
        self._buffer(data[start:])

    def read_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _buffer(self, chunk: bytes) -> None:
        if not chunk:
            return
        room = RX_BUFFER_SIZE - 1 - len(self._rx)
        self._rx += chunk[:room]
        self.rx_dropped += max(0, len(chunk) - room)
        self.rx_high_water = max(self.rx_high_water, len(self._rx))

    def _emit(self, *lines: str) -> None:
        self._out += "".join(line + "\r\n" for line in lines).encode()

    # ---- realtime commands -------------------------------------------------------
    def _realtime(self, byte: bytes) -> None:
        if byte == b"?":
            self._emit(self.status_report())
        elif byte == b"!" and self.state in ("Idle", "Run"):
            self._holding = True
            self.state = "Hold"
        elif byte == b"~" and self.state == "Hold":
            self._holding = False
            self.state = "Run" if self._planner else "Idle"
            self._block_started = time.monotonic()
            self._moving = bool(self._planner)
        elif byte == b"\x18":
            self._soft_reset()
        # bytes 0x80-0xFF are overrides: accepted and ignored here

    def status_report(self) -> str:
        state = f"Hold:{1 if self._moving else 0}" if self.state == "Hold" else self.state
        feed, s = (self._modal.feed, self._modal.s) if self.state == "Run" else (0.0, 0.0)
        x, y, z = self.position
        return f"<{state}|MPos:{x:.3f},{y:.3f},{z:.3f}|FS:{feed:.0f},{s:.0f}>"

    def _soft_reset(self) -> None:
        lost_position = self._moving
        self._rx.clear()
        self._planner.clear()
        self._planned_end = self.position
        self._modal = _Modal()
        self._moving = self._holding = self._await_reset = False
        if lost_position:
            self._emit("ALARM:3")
            self.state = "Alarm"
        elif self.state != "Alarm":
            self.state = "Idle"
        self._emit("", BANNER)
        if self.state == "Alarm":
            self._emit("[MSG:'$H'|'$X' to unlock]")

    # ---- the main loop -----------------------------------------------------------
    def run(self, now: float) -> float | None:
        """Move the machine on to `now` and execute buffered lines while the planner has
        room. Returns when the running move will end (None if nothing is moving)."""
        deadline = self._advance(now)
        while not (self.dropped or self._await_reset) and len(self._planner) < PLANNER_BLOCKS:
            match = _LINE_END.search(self._rx)
            if match is None:
                break
            raw = bytes(self._rx[: match.start()])
            del self._rx[: match.end()]
            self._line(raw.decode("ascii", "replace"), now)
            deadline = self._advance(now)
        return deadline

    def _advance(self, now: float) -> float | None:
        while self._moving:
            block = self._planner[0]
            done_at = self._block_started + block.seconds
            if done_at > now:
                return done_at
            self._planner.popleft()
            self.position = block.end
            (x0, y0, _), (x1, y1, _) = block.start, block.end
            if block.power is not None and self.on_burn is not None:
                self.on_burn(x0, y0, x1, y1, block.power)
            if self.on_move is not None:
                self.on_move(x0, y0, x1, y1, block.power)
            self._block_started = done_at
            self._moving = bool(self._planner) and not self._holding
        if self.state == "Run" and not self._planner:
            self.state = "Idle"
        return None

    def _line(self, raw: str, now: float) -> None:
        text = _UNSEEN.sub("", _COMMENT.sub("", raw)).upper()
        if len(text) > LINE_BUFFER_SIZE - 1:
            self._emit("error:11")
        elif not text:
            self._emit("ok")
        elif text == "$C" and self.state == "Check":  # leaving check mode resets GRBL
            self._emit("[MSG:Disabled]", "ok")
            self._soft_reset()
        elif text.startswith("$"):
            self._emit(*self._system(text))
        elif self.state == "Alarm":
            self._emit("error:9")
        else:
            self.gcode_lines += 1
            if self.gcode_lines == self.drop_after_lines:
                self.dropped = True
            elif self.gcode_lines == self.fail_at_line:
                self._emit(f"error:{self.fail_code}")
            else:
                try:
                    if self._gcode(text, now):
                        self._emit("ok")
                except _GcodeError as error:
                    self._emit(f"error:{error.code}")

    # ---- '$' system commands -----------------------------------------------------
    def _system(self, text: str) -> list[str]:  # noqa: C901 -- one branch per $ command, as GRBL has them
        busy = self.state in ("Run", "Hold")
        if text == "$":
            return ["[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]", "ok"]
        if text == "$$":
            if busy:
                return ["error:8"]
            return [f"${k}={_setting(k, v)}" for k, v in sorted(self.settings.items())] + ["ok"]
        if text == "$G":
            return [self.parser_state(), "ok"]
        if text == "$C":
            if self.state != "Idle":
                return ["error:8"]
            self.state = "Check"
            return ["[MSG:Enabled]", "ok"]
        if text == "$X":
            if self.state == "Alarm":
                self.state = "Idle"
                return ["[MSG:Caution: Unlocked]", "ok"]
            return ["ok"]
        if busy:
            return ["error:8"]
        if text == "$I":
            return [VERSION, f"[OPT:V,{PLANNER_BLOCKS},{RX_BUFFER_SIZE}]", "ok"]
        if text == "$H":
            if not self.settings[22]:
                return ["error:5"]
            self.position = self._planned_end = (0.0, 0.0, 0.0)
            self.state = "Idle"
            return ["ok"]
        match = re.fullmatch(r"\$(\d+)=(.*)", text)
        if not match or int(match[1]) not in self.settings:
            return ["error:3"]
        if not _NUMBER.fullmatch(match[2]):
            return ["error:2"]
        number, value = int(match[1]), float(match[2])
        if value < 0:
            return ["error:4"]
        self.settings[number] = value
        return ["ok"]

    def parser_state(self) -> str:
        m = self._modal
        return (f"[GC:G{m.motion} G54 G17 {'G20' if m.inches else 'G21'} "
                f"{'G91' if m.incremental else 'G90'} G94 M{m.spindle} M9 T0 F{m.feed:g} S{m.s:g}]")

    # ---- G-code ------------------------------------------------------------------
    def _gcode(self, text: str, now: float) -> bool:  # noqa: C901 -- one branch per G-code word, as GRBL has them
        """Execute one G-code block; False when it raised a critical alarm (no reply)."""
        g_codes: list[float] = []
        m_codes: list[float] = []
        values: dict[str, float] = {}
        for letter, number in _WORD.findall(text):
            if not "A" <= letter <= "Z":
                raise _GcodeError(1)
            if not number:
                raise _GcodeError(2)
            value = float(number)
            if letter == "G":
                g_codes.append(value)
            elif letter == "M":
                m_codes.append(value)
            elif letter in "FNSXYZ":
                if letter in values:
                    raise _GcodeError(25)
                values[letter] = value
            elif letter in "IJKLPRT":  # GRBL words for arcs, dwell and tools, unused here
                raise _GcodeError(36)
            else:
                raise _GcodeError(20)

        groups: dict[str, int] = {}
        for code in g_codes:
            if code != int(code) or int(code) not in _G_GROUPS:
                raise _GcodeError(20)
            group = _G_GROUPS[int(code)]
            if group in groups:
                raise _GcodeError(21)
            groups[group] = int(code)
        if len(m_codes) > 1:
            raise _GcodeError(21)
        if any(code not in (3, 4, 5) for code in m_codes):
            raise _GcodeError(20)
        if not 0 <= values.get("N", 0) <= 9999999:
            raise _GcodeError(27)
        if values.get("F", 0) < 0 or values.get("S", 0) < 0:
            raise _GcodeError(4)
        axes = [values.get(a) for a in "XYZ"]
        has_axes = any(v is not None for v in axes)
        if "motion" in groups and not has_axes:
            raise _GcodeError(26)

        m = self._modal
        m.inches = groups.get("units", 20 if m.inches else 21) == 20
        m.incremental = groups.get("distance", 91 if m.incremental else 90) == 91
        scale = 25.4 if m.inches else 1.0
        if "F" in values:
            m.feed = values["F"] * scale
        if "S" in values:
            m.s = values["S"]
        if m_codes:
            m.spindle = int(m_codes[0])
        m.motion = groups.get("motion", m.motion)
        if not has_axes:
            return True
        if m.motion == 1 and m.feed <= 0:
            raise _GcodeError(22)
        start = self._planned_end
        x, y, z = (
            s if v is None else (s + v * scale if m.incremental else v * scale)
            for s, v in zip(start, axes, strict=True)
        )
        end = (x, y, z)
        if self.settings[20] and self._outside_travel(end):
            self._soft_limit_alarm()
            return False
        self._planned_end = end
        if self.state == "Check":  # parsed and checked, never moved
            return True
        laser_on = m.spindle in (3, 4) and m.s > 0 and (m.motion == 1 or not self.settings[32])
        rate = m.feed if m.motion == 1 else self.settings[110]
        seconds = math.dist(start, end) / rate * 60.0 * self.time_scale
        power = min(m.s, self.settings[30]) if laser_on else None
        self._planner.append(_Block(start, end, power, seconds))
        if self.state == "Idle":
            self.state = "Run"
        if self.state == "Run" and not self._moving:
            self._moving = True
            self._block_started = now
        return True

    def _outside_travel(self, target: tuple[float, ...]) -> bool:
        for axis, value in enumerate(target):
            travel = self.settings[130 + axis]
            low, high = (0.0, travel) if int(self.settings[23]) >> axis & 1 else (-travel, 0.0)
            if not low <= value <= high:
                return True
        return False

    def _soft_limit_alarm(self) -> None:
        # GRBL stops, flushes the planner and waits for a reset; the position is kept.
        self._planner.clear()
        self._planned_end = self.position
        self._moving = self._holding = False
        self.state = "Alarm"
        self._await_reset = True
        self._emit("ALARM:2", "[MSG:Reset to continue]")

    @property
    def laser_firing(self) -> bool:
        """Whether the beam is on right now (a burning move is executing)."""
        return self._moving and self._planner[0].power is not None

    @property
    def spindle(self) -> str:
        return f"M{self._modal.spindle}"


def _setting(number: int, value: float) -> str:
    return f"{int(value)}" if number in _INTEGER_SETTINGS else f"{value:.3f}"


class PtyGrbl:
    """The simulated controller on a pseudo-terminal; pyserial opens `device_path`."""

    def __init__(self, engine: GrblEngine) -> None:
        self.engine = engine
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or line editing, like a USB serial port
        os.set_blocking(self._master, False)
        self.device_path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="simulated-grbl", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        pending = bytearray()
        deadline: float | None = None
        try:
            while not self._closing:
                now = time.monotonic()
                timeout = None if deadline is None else max(0.0, deadline - now)
                readable, writable, _ = select.select(
                    [self._master, self._wake_r], [self._master] if pending else [], [], timeout
                )
                if self._master in readable:
                    self.engine.receive(os.read(self._master, 4096))
                deadline = self.engine.run(time.monotonic())
                pending += self.engine.read_output()
                if self.engine.dropped:
                    return
                if pending and (writable or not readable):
                    try:
                        del pending[: os.write(self._master, pending)]
                    except BlockingIOError:
                        pass
        finally:
            for fd in (self._master, self._slave):
                os.close(fd)

    def close(self) -> None:
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> PtyGrbl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopbackPort:
    """The simulated controller in-process, with the part of pyserial's API that
    `fabrication.grbl.GrblLaser` uses: no pseudo-terminal, no thread, so fast."""

    def __init__(self, engine: GrblEngine, timeout: float = 0.05) -> None:
        self.engine = engine
        self.timeout = timeout
        self.port = "simulated GRBL"
        self._in = bytearray()
        self._open = True

    def _pump(self) -> float | None:
        deadline = self.engine.run(time.monotonic())
        self._in += self.engine.read_output()
        return deadline

    def _check(self) -> None:
        if not self._open or self.engine.dropped:
            raise OSError(errno.EIO, "the simulated GRBL connection dropped")

    @property
    def in_waiting(self) -> int:
        self._pump()
        return len(self._in)

    def write(self, data: bytes) -> int:
        self._check()
        self.engine.receive(bytes(data))
        self._pump()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        give_up = time.monotonic() + self.timeout
        while not self._in:
            self._check()
            deadline = self._pump()
            now = time.monotonic()
            if self._in or deadline is None or now >= give_up:
                break
            time.sleep(min(deadline, give_up) - now)
        out = bytes(self._in[:size])
        del self._in[:size]
        return out

    def reset_input_buffer(self) -> None:
        self._pump()
        self._in.clear()

    def close(self) -> None:
        self._open = False
