"""A GRBL 1.1 laser controller on a serial port, behind the `Laser` interface.

Streaming uses GRBL's character-counting protocol: GRBL answers every line with ``ok``
or ``error:N`` once it has parsed it, and holds unparsed bytes in a 128-byte receive
buffer, so the driver keeps the bytes of unanswered lines (newlines included) within
127 and the buffer never overflows, while the controller always has the next lines.

When the controller rejects a line or raises an alarm, lines already in its buffer would
still run, so the driver feed-holds (``!``), waits for the hold to complete, soft-resets
(ctrl-X: motion stops, buffers flush, the beam goes off), sends ``M5`` and confirms it
with ``$G``. Lines acknowledged but still queued in GRBL's motion planner are flushed by
that reset, so the job resumes from the earliest line that may not have run.

A host that dies (a kill, a crash) stops none of that: GRBL runs every line it received.
So connecting never resets a moving controller: it first waits until the machine is no
longer running, and `ran` then tells from where the head stands whether the last line a
dead host may have written ran.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any, NamedTuple, Protocol

from edge_app.errors import PufError
from fabrication.laser import (
    Command,
    Laser,
    LaserJobStopped,
    Progress,
    describe_grbl,
    is_motion,
    job_commands,
    job_outline,
    position_after,
    restore_commands,
    words,
)

_BANNER = re.compile(r"Grbl(?:HAL)? (\d+)\.(\d+)(\w*)")
_OPTIONS = re.compile(r"\[OPT:[^,\]]*,(\d+),(\d+)")
_STATUS = re.compile(r"<([A-Za-z]+)(?::(\d+))?(?:\|[MW]Pos:([-\d.]+),([-\d.]+),([-\d.]+))?[|>]")
_REALTIME = set("?!~\x18")
STEPPER_SEGMENTS = 6  # GRBL's stepper segment buffer: moves it holds have left the planner
INTERRUPTED = "interrupted by the user"  # a job stopped by Ctrl-C
BOOT_S = 2.5  # an Arduino resets when the port opens and prints its banner after booting


class SerialPort(Protocol):
    """What the driver needs of a port: `serial.Serial`, or the simulator's loopback."""

    @property
    def in_waiting(self) -> int: ...

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


class _PortDropped(Exception):
    """The port failed or the controller went silent."""


class _Item(NamedTuple):
    command: Command
    job: bool  # a line of the job (not a command restoring the state before it)
    moves: bool  # takes a block in the motion planner
    data: bytes  # what goes on the wire


class _Stream:
    """Bookkeeping of one job stream: what is sent, answered, and may not have run."""

    def __init__(self, queue: list[_Item], planner_blocks: int, checking: bool = False) -> None:
        self.queue = queue
        # In check mode ($C) GRBL answers every line and moves nothing: collect rejections.
        self.checking = checking
        self.rejected: list[tuple[Command, str]] = []
        self.next = 0  # index of the next item to send
        self.sent: deque[_Item] = deque()  # sent and not yet answered
        self.in_flight = 0  # their bytes, which sit in GRBL's receive buffer
        # Job lines answered ok whose moves may still wait in the planner or stepper buffer.
        self.recent_moves: deque[int] = deque(maxlen=planner_blocks + STEPPER_SEGMENTS)

    def oldest(self) -> Command:
        """The command the controller is answering next (or the last one sent)."""
        if self.sent:
            return self.sent[0].command
        return self.queue[max(self.next, 1) - 1].command

    def resume_line(self) -> int:
        """The earliest job line that may not have been executed yet."""
        waiting = (*self.sent, *islice(self.queue, self.next, None))
        unanswered = (item.command.line for item in waiting if item.job)
        candidates = [next(unanswered, self.queue[-1].command.line + 1)]
        return min(candidates + list(self.recent_moves)[:1])


def _item(command: Command, job: bool) -> _Item:
    return _Item(command, job, is_motion(command.text), (command.text + "\n").encode())


class GrblLaser(Laser):
    """GRBL 1.1 in laser mode ($32=1). `open()` a device path, or wrap any `SerialPort`."""

    def __init__(
        self,
        port: SerialPort,
        *,
        name: str = "the serial port",
        unlock: bool = False,
        s_max: float | None = None,
        answer_timeout_s: float = 10.0,
        poll_s: float = 0.2,
    ) -> None:
        """Connect: reset the controller, check it is GRBL 1.1 in laser mode (and that its
        full-power S value $30 is `s_max`, the scale the job's S words were written for),
        and unlock an alarm only when `unlock` is set. `answer_timeout_s` of silence
        (status polled every `poll_s`) counts as a dropped port."""
        self._port = port
        self.name = name
        self._answer_timeout = answer_timeout_s
        self._poll = poll_s
        self._buffer = bytearray()
        self._planner_blocks = 15
        self._rx_size = 128
        self._steps_per_mm = (80.0, 80.0, 80.0)  # $100-$102 say the machine's
        self._stream: _Stream | None = None
        self._resume_line = 1
        try:
            self._handshake(unlock, s_max)
        except _PortDropped as error:
            raise PufError(f"{name} stopped answering while connecting: {error}") from None

    @classmethod
    def open(cls, device: str, baud: int = 115200, **options: Any) -> GrblLaser:
        import serial

        try:
            port = serial.Serial(device, baud, timeout=0.02, write_timeout=5.0)
        except (serial.SerialException, OSError) as error:
            raise PufError(f"cannot open the serial port {device}: {error}") from None
        try:
            return cls(port, name=device, **options)
        except BaseException:
            port.close()
            raise

    # ---- the Laser interface -----------------------------------------------------
    def check_job(self, lines: Sequence[str], start_line: int = 1,
                  progress: Progress | None = None) -> None:
        """Stream the job in GRBL's check mode ($C): the controller parses every line (and
        checks soft limits) without moving or firing, so a line it would reject is found
        before anything is etched, not mid-job where the lines behind it still run."""
        stream = self._prepare(lines, start_line, checking=True)
        if stream is None:
            return
        after = ""
        try:
            self._command("$C")
            self._send_all(stream, progress)
            self._command("$C")  # leaving check mode soft-resets GRBL
            if self._await_banner(self._answer_timeout) is None:
                raise _PortDropped("no banner after leaving check mode")
        except LaserJobStopped as stop:  # an alarm: GRBL stops checking there
            stream.rejected.append((Command(stop.line, stop.command), stop.reason))
            after = f" {stop.laser_state}."
        except _PortDropped as error:
            raise PufError(f"the connection to {self.name} dropped while checking the job "
                           f"({error}); nothing was etched") from None
        except KeyboardInterrupt:
            self._port.write(b"\x18")  # a reset leaves check mode
            raise PufError("the check was interrupted; nothing was etched") from None
        if stream.rejected:
            shown = "; ".join(f"line {c.line} ({c.text!r}): {describe_grbl(r)}"
                              for c, r in stream.rejected[:5])
            more = f" and {len(stream.rejected) - 5} more" if len(stream.rejected) > 5 else ""
            raise PufError(f"the controller rejects {len(stream.rejected)} line(s) of the job: "
                           f"{shown}{more}. Nothing was etched.{after}")

    def run_job(self, lines: Sequence[str], start_line: int = 1, progress: Progress | None = None,
                on_send: Progress | None = None, on_done: Progress | None = None) -> None:
        # GRBL runs line by line: `on_send` is its journal, and it has no units to report
        stream = self._stream = self._prepare(lines, start_line)
        if stream is None:
            return
        try:
            self._send_all(stream, progress, on_send)
            self._wait_until_idle(stream)
        except _PortDropped as error:
            self._stop_blind(stream, f"the connection to {self.name} dropped ({error})")
        except KeyboardInterrupt:
            self._stop(stream, INTERRUPTED)
        finally:
            self._resume_line = stream.resume_line()
            self._stream = None

    def _prepare(self, lines: Sequence[str], start_line: int,
                 checking: bool = False) -> _Stream | None:
        """The commands to send from `start_line`, after those restoring the state before it."""
        commands = job_commands(lines)
        for command in commands:
            if _REALTIME & set(command.text):
                raise PufError(
                    f"line {command.line} ({command.text!r}) holds a GRBL realtime character "
                    "(? ! ~ or ctrl-X), which the controller would act on at once"
                )
            if len(command.text) >= self._rx_size - 1:
                raise PufError(f"line {command.line} is too long for GRBL's receive buffer")
        todo = [_item(c, True) for c in commands if c.line >= start_line]
        if not todo:
            return None
        restore = [_item(Command(todo[0].command.line, text), False)
                   for text in restore_commands(commands, start_line)]
        return _Stream(restore + todo, self._planner_blocks, checking)

    @property
    def resume_line(self) -> int:
        return self._stream.resume_line() if self._stream else self._resume_line

    def ran(self, lines: Sequence[str], line: int) -> bool | None:
        commands = job_commands(lines)
        before, after = position_after(commands, line - 1), position_after(commands, line)
        try:
            where = self._position()
        except _PortDropped:
            return None
        if where is None or not before or before == after:
            return None

        def at(target: dict[str, float]) -> bool:
            for axis, value in target.items():  # GRBL stands on the step nearest a target
                i = "XYZ".index(axis)
                step = round(value * self._steps_per_mm[i]) / self._steps_per_mm[i]
                if min(abs(where[i] - value), abs(where[i] - step)) > 0.001:  # it reports 3 decimals
                    return False
            return True

        at_before, at_after = at(before), at(after)
        return None if at_before == at_after else at_after

    def laser_off(self) -> str:
        try:
            self._write(b"!")
            give_up = time.monotonic() + self._answer_timeout
            while time.monotonic() < give_up:
                state, sub = self._status()
                if state in ("Idle", "Alarm") or (state == "Hold" and sub == "0"):
                    break
                time.sleep(0.02)
            self._write(b"\x18")
            if self._await_banner(self._answer_timeout) is None:
                raise _PortDropped("no banner after the reset")
            state, _ = self._status()
            if state != "Alarm":
                self._command("M5")
            modes = [line for line in self._command("$G") if line.startswith("[GC:")]
            state, _ = self._status()
        except (_PortDropped, PufError) as error:
            return (f"The controller did not confirm the laser is off ({error}): "
                    "switch the laser off at the machine")
        if not modes or "M5" not in modes[0].split():
            return (f"The controller did not confirm M5 ({modes}): "
                    "switch the laser off at the machine")
        if state == "Alarm":
            return ("Laser off (M5 confirmed); the controller is locked in ALARM: check the "
                    "machine, then unlock it ($X) or home it ($H) before resuming")
        return f"Laser off (M5 confirmed), controller {state}"

    def frame(self, lines: Sequence[str], passes: int = 1) -> float:
        """Trace the rectangle around the job's burns with the beam off (M5: in laser mode GRBL
        fires nothing then, whatever the S value) at the job's feed, `passes` times, so the
        operator sees where the job lands; returns the seconds it took."""
        x0, y0, x1, y1 = job_outline(lines)
        feed = next((found["F"] for c in job_commands(lines) if "F" in (found := words(c.text))), 600.0)
        corners = [(x1, y0), (x1, y1), (x0, y1), (x0, y0)] * passes
        program = ["G21", "G90", "M5 S0", f"G0 X{x0:.4f} Y{y0:.4f}",
                   *(f"G1 X{x:.4f} Y{y:.4f} F{feed:g}" for x, y in corners), "M5 S0"]
        started = time.monotonic()
        try:
            self.run_job(program)
        except LaserJobStopped as stop:
            if stop.reason == INTERRUPTED:  # Ctrl-C: the head was stopped and the beam is off
                raise KeyboardInterrupt from None
            raise PufError(f"{self.name}: the frame stopped: {stop.reason}. {stop.laser_state}") from None
        return time.monotonic() - started

    def close(self) -> None:
        try:
            self._port.close()
        except OSError:
            pass

    # ---- connecting --------------------------------------------------------------
    def _handshake(self, unlock: bool, s_max: float | None) -> None:
        self._port.reset_input_buffer()
        self._wait_while_running()
        self._write(b"\x18")
        banner = self._await_banner(BOOT_S)
        if banner is None:  # the reset may have hit the bootloader: try once more
            self._write(b"\x18")
            banner = self._await_banner(BOOT_S)
        if banner is None:
            raise PufError(f"no GRBL banner from {self.name}: is a GRBL controller connected, "
                           "powered, and set to this baud rate?")
        major, minor = int(banner[1]), int(banner[2])
        if (major, minor) < (1, 1):
            raise PufError(f"{self.name} runs {banner[0]}; puf needs GRBL 1.1 or newer "
                           "(numbered error codes and laser mode)")
        for line in self._command("$I"):
            if match := _OPTIONS.match(line):
                self._planner_blocks, self._rx_size = int(match[1]), int(match[2])
        settings = dict(
            line[1:].split("=", 1) for line in self._command("$$") if re.match(r"\$\d+=", line)
        )
        steps = (float(settings.get("100", "0")), float(settings.get("101", "0")), float(settings.get("102", "0")))
        if all(step > 0 for step in steps):
            self._steps_per_mm = steps
        if settings.get("32", "").strip() not in ("1", "1.000"):
            raise PufError(
                f"the controller on {self.name} is not in laser mode "
                f"($32={settings.get('32', '?')}): "
                "in spindle mode GRBL keeps the beam on during G0 travel and would burn lines "
                "between the labels. Set $32=1 (from a terminal) and run again"
            )
        if s_max is not None and float(settings.get("30", "nan")) != s_max:
            raise PufError(
                f"the controller on {self.name} reaches full power at S{settings.get('30', '?')} "
                f"($30) but the job's power calibration is written for S{s_max:g}: the laser "
                f"would fire at the wrong power. Set $30={s_max:g} or recalibrate"
            )
        state, _ = self._status()
        if state == "Alarm":
            if not unlock:
                raise PufError(
                    f"the controller on {self.name} is in ALARM: check the machine, then home it "
                    "($H) or let puf unlock it ($X, puf etch --unlock)"
                )
            self._command("$X")
        elif state != "Idle":
            raise PufError(f"the controller on {self.name} is busy ({state}); "
                           "wait until it is Idle")

    def _wait_while_running(self) -> None:
        """Wait until a controller still running lines (left by a host that died) has run
        them: a reset now would stop it mid-line, lose its position, and leave no way to
        know which lines ran. A silent controller (booting after the port opened) is left
        to the reset that follows."""
        self._write(b"?")
        give_up = time.monotonic() + BOOT_S
        while (line := self._read_line(max(0.0, give_up - time.monotonic()))) is not None:
            if _BANNER.match(line):  # it just booted: ask again
                self._write(b"?")
            elif (status := _STATUS.match(line)) and status[1] not in ("Run", "Jog"):
                return
            elif status:  # still running: each answer proves it alive
                time.sleep(self._poll)
                self._write(b"?")
                give_up = time.monotonic() + self._answer_timeout

    def _await_banner(self, timeout: float) -> re.Match[str] | None:
        give_up = time.monotonic() + timeout
        while (left := give_up - time.monotonic()) > 0:
            line = self._read_line(left)
            if line is not None and (match := _BANNER.match(line)):
                return match
        return None

    # ---- streaming ---------------------------------------------------------------
    def _send_all(self, stream: _Stream, progress: Progress | None,
                  on_send: Progress | None = None) -> None:
        limit = self._rx_size - 1
        queue = stream.queue
        while stream.next < len(queue) or stream.sent:
            batch = bytearray()
            while stream.next < len(queue):
                item = queue[stream.next]
                if stream.in_flight + len(item.data) > limit:
                    break
                if item.job and on_send is not None:
                    # every line told to on_send before this one is written before it is told
                    if batch:
                        self._write(bytes(batch))
                        batch.clear()
                    on_send(item.command.line)
                batch += item.data
                stream.sent.append(item)
                stream.in_flight += len(item.data)
                stream.next += 1
            if batch:
                self._write(bytes(batch))
            if stream.sent:
                self._on_line(stream, self._next_response(), progress)
            for line in self._ready_lines():
                self._on_line(stream, line, progress)

    def _on_line(self, stream: _Stream, line: str, progress: Progress | None) -> None:
        checked = line.startswith("error:") and stream.checking
        if line == "ok" or checked:
            if not stream.sent:
                return  # not an answer to anything of ours
            item = stream.sent.popleft()
            stream.in_flight -= len(item.data)
            if checked:
                stream.rejected.append((item.command, line))
            elif item.job:
                if item.moves:
                    stream.recent_moves.append(item.command.line)
                if progress is not None:
                    progress(item.command.line)
        elif line.startswith("error:"):
            self._stop(stream, f"the controller rejected it with {describe_grbl(line)}")
        elif line.startswith("ALARM:"):
            self._stop(stream, f"the controller raised {describe_grbl(line)}")
        elif _BANNER.match(line):
            self._stop(stream, "the controller reset itself (power, its reset button, "
                               "or another program on the port)")
        elif (status := _STATUS.match(line)) and status[1] == "Alarm":
            self._stop(stream, "the controller is in ALARM")

    def _wait_until_idle(self, stream: _Stream) -> None:
        while True:
            self._write(b"?")
            line = self._next_response()
            while not line.startswith("<"):
                self._on_line(stream, line, None)
                line = self._next_response()
            status = _STATUS.match(line)
            if status and status[1] == "Idle":
                return
            if status and status[1] == "Alarm":
                self._stop(stream, "the controller went into ALARM")
            time.sleep(self._poll)

    # ---- stopping ----------------------------------------------------------------
    def _stop(self, stream: _Stream, reason: str) -> None:
        at, resume = stream.oldest(), stream.resume_line()
        raise LaserJobStopped(at.line, at.text, reason, self.laser_off(), resume)

    def _stop_blind(self, stream: _Stream, reason: str) -> None:
        at, resume = stream.oldest(), stream.resume_line()
        try:
            self._port.write(b"!\x18")
        except OSError:
            pass
        raise LaserJobStopped(
            at.line, at.text, reason,
            "The laser state is unknown: make sure it is off at the machine before anything else",
            resume,
        )

    # ---- talking -----------------------------------------------------------------
    def _command(self, text: str) -> list[str]:
        """Send one line while nothing else is in flight; its reply lines up to ``ok``."""
        self._write(text.encode() + b"\n")
        lines = []
        while (line := self._next_response()) != "ok":
            if line.startswith("error:"):
                raise PufError(f"{self.name} rejected {text!r}: {describe_grbl(line)}")
            lines.append(line)
        return lines

    def _status(self) -> tuple[str, str]:
        """The controller's state (and sub-state), skipping any other output."""
        found = self._status_report()
        return found[1], found[2] or ""

    def _position(self) -> tuple[float, float, float] | None:
        """Where the head stands (None if the status report does not say)."""
        found = self._status_report()
        return None if found[3] is None else (float(found[3]), float(found[4]), float(found[5]))

    def _status_report(self) -> re.Match[str]:
        self._write(b"?")
        while not (found := _STATUS.match(self._next_response())):
            pass
        return found

    def _next_response(self) -> str:
        """The next non-blank line; asks for a status report after each `poll_s` of
        silence and gives up after `answer_timeout_s` of it."""
        silent_since = time.monotonic()
        while True:
            line = self._read_line(self._poll)
            if line:
                return line
            if line is None:
                if time.monotonic() - silent_since > self._answer_timeout:
                    raise _PortDropped(f"no answer for {self._answer_timeout:g} s")
                self._write(b"?")

    def _read_line(self, timeout: float) -> str | None:
        """One line ('' for a blank one), or None if none is complete within `timeout`."""
        give_up = time.monotonic() + timeout
        while (end := self._buffer.find(b"\n")) < 0:
            self._fill()
            if time.monotonic() >= give_up and self._buffer.find(b"\n") < 0:
                return None
        line = self._buffer[:end].decode("ascii", "replace").strip()
        del self._buffer[: end + 1]
        return line

    def _ready_lines(self) -> list[str]:
        """Complete non-blank lines already received, without waiting."""
        try:
            waiting = self._port.in_waiting
            if waiting:
                self._buffer += self._port.read(waiting)
        except OSError as error:
            raise _PortDropped(str(error)) from None
        *complete, self._buffer[:] = self._buffer.split(b"\n")
        return [text for raw in complete if (text := raw.decode("ascii", "replace").strip())]

    def _fill(self) -> None:
        try:
            chunk = self._port.read(max(1, self._port.in_waiting))
        except OSError as error:
            raise _PortDropped(str(error)) from None
        self._buffer += chunk

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except OSError as error:
            raise _PortDropped(str(error)) from None
