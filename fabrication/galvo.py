"""A galvo laser on a BJJCZ LMC board (EzCAD2's) over USB, behind the `Laser` interface.

It runs the same G-code job `puf design` writes, turned into the board's mark and jump
lists in galvo bits through a lens field (its size, bits across it, axis swap and mirror,
a correction hook). Each label of the job is one *unit*: one list the board runs to its end
before the next is sent, so the driver always knows which labels are finished: a unit is
announced to `on_send` before its list goes out and reported to `on_done` once the board
says it ran, and a resume starts at the first unit not known finished. A unit the board
began and did not finish (an error, a dropped cable) is never run again: the stop names
it as partly marked, and the job goes on after it.

Every write is checked (a USB error, a short write, a short answer stop the job), the
board's status is read back after each command, and on any error the list is stopped and
the source and the laser port switched off, each confirmed by the board. The packets are
galvoplotter's (see `fabrication.lmc`); the connection and the list handling are ours.
"""

from __future__ import annotations

import errno
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from edge_app.errors import PufError
from fabrication.laser import Laser, LaserJobStopped, Progress, job_commands, words
from fabrication.laser_power import PowerCalibration
from fabrication.usb_socket import UsbSocketDevice

# A 1 W nanosecond fibre source measured at six power settings (percent -> mW).
DEFAULT_POWER_POINTS = ((0, 0.0), (10, 70.0), (25, 230.0), (50, 480.0), (75, 730.0), (100, 980.0))
_LABEL = re.compile(r";\s*label (\S+)")
_ALLOWED = {"G": (0, 1, 21, 90, 94), "M": (3, 4, 5)}


class UsbDevice(Protocol):
    """What the driver needs of a device: `usb.core.Device`, or the simulated board."""

    def write(self, endpoint: int, data: bytes, timeout: int | None = None) -> int: ...

    def read(self, endpoint: int, size_or_buffer: int, timeout: int | None = None) -> Sequence[int]: ...

    def clear_halt(self, endpoint: int) -> None: ...


@dataclass(frozen=True)
class LensField:
    """How the job's mm become galvo bits: `bits` across a field of `field_mm`, the job point
    `centre_mm` (None: the middle of the job) at the field's centre, then the axes swapped
    and mirrored as the head is mounted; `correction` maps field mm to field mm (a lens
    distortion table) before the bits are rounded."""

    field_mm: float = 110.0
    bits: int = 0xFFFF
    centre_mm: tuple[float, float] | None = None
    swap_xy: bool = False
    mirror_x: bool = False
    mirror_y: bool = False
    correction: Callable[[float, float], tuple[float, float]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.field_mm < math.inf or not 0 < self.bits <= 0xFFFF:
            raise PufError(f"a lens field needs a size above 0 mm and 1..65535 bits across it, "
                           f"got {self.field_mm} mm and {self.bits} bits")

    @property
    def bits_per_mm(self) -> float:
        return self.bits / self.field_mm

    def to_bits(self, x_mm: float, y_mm: float) -> tuple[int, int] | None:
        """Galvo bits of a job point (None: outside the field)."""
        from fabrication.lmc import CENTRE

        cx, cy = self.centre_mm or (0.0, 0.0)
        u, v = x_mm - cx, y_mm - cy
        if self.swap_xy:
            u, v = v, u
        u, v = -u if self.mirror_x else u, -v if self.mirror_y else v
        if self.correction is not None:
            u, v = self.correction(u, v)
        bx, by = round(CENTRE + u * self.bits_per_mm), round(CENTRE + v * self.bits_per_mm)
        half = self.bits / 2
        if not (abs(bx - CENTRE) <= half and abs(by - CENTRE) <= half and 0 <= bx <= 0xFFFF and 0 <= by <= 0xFFFF):
            return None
        return bx, by

    def to_mm(self, bx: float, by: float) -> tuple[float, float]:
        """The job point of galvo bits, for an ideal lens (no correction): the simulator's optics."""
        from fabrication.lmc import CENTRE

        u, v = (bx - CENTRE) / self.bits_per_mm, (by - CENTRE) / self.bits_per_mm
        u, v = -u if self.mirror_x else u, -v if self.mirror_y else v
        if self.swap_xy:
            u, v = v, u
        cx, cy = self.centre_mm or (0.0, 0.0)
        return u + cx, v + cy


@dataclass(frozen=True)
class GalvoSettings:
    """The marking parameters: speeds, the delays that let the mirrors and the source keep up,
    the fibre source's pulse frequency and width, and the power table (percent -> mW)."""

    mark_speed_mm_s: float = 1000.0
    jump_speed_mm_s: float = 4000.0
    laser_on_delay_us: float = 100.0
    laser_off_delay_us: float = 100.0
    polygon_delay_us: float = 100.0
    jump_delay_us: float = 100.0
    frequency_khz: float = 30.0
    pulse_width_ns: int = 4
    power: PowerCalibration = PowerCalibration(DEFAULT_POWER_POINTS, s_max=100)

    def __post_init__(self) -> None:
        for name in ("mark_speed_mm_s", "jump_speed_mm_s", "frequency_khz"):
            if not 0 < getattr(self, name) < math.inf:
                raise PufError(f"the galvo's {name.replace('_', ' ')} must be above 0 and finite, "
                               f"got {getattr(self, name)}")
        for name in ("laser_on_delay_us", "laser_off_delay_us", "polygon_delay_us", "jump_delay_us"):
            if not abs(getattr(self, name)) <= 0xFFFF:
                raise PufError(f"the galvo's {name.replace('_', ' ')} must lie within ±65535 µs")
        if not 0 <= self.pulse_width_ns <= 0xFFFF:
            raise PufError(f"the pulse width must lie in 0..65535 ns, got {self.pulse_width_ns}")
        if self.power.s_max != 100:
            raise PufError("a galvo power table maps percent (0..100) to mW: its s_max must be 100")


@dataclass(frozen=True)
class Unit:
    """One label of the job: the list that marks it, and the job lines it covers."""

    line: int  # its first job command: where a resume starts it
    label: str
    lines: tuple[int, ...]
    commands: tuple[bytes, ...]

    @property
    def end_bits(self) -> tuple[int, int]:
        """Where its list leaves the mirrors: its last target, in galvo bits."""
        from fabrication.lmc import unpack

        return next(c[1:3] for c in reversed(unpack(b"".join(self.commands))) if c[0] in _MOVES)

    @property
    def seconds(self) -> float:
        """Its time from the field's centre: more than from the label before, so a safe bound."""
        from fabrication.lmc import list_seconds, unpack

        return list_seconds(unpack(b"".join(self.commands)))


@dataclass(frozen=True)
class GalvoJob:
    """A G-code job as the board's lists, one unit per label."""

    units: tuple[Unit, ...]
    lens: LensField
    end_line: int  # one past the job's last line

    def units_from(self, start_line: int) -> list[Unit]:
        """The units to run from `start_line`: a start inside a unit goes on after it, never
        re-marking its beginning."""
        return [unit for unit in self.units if unit.line >= start_line]

    def next_line(self, unit: Unit) -> int:
        later = [u.line for u in self.units if u.line > unit.line]
        return later[0] if later else self.end_line

    def seconds(self, start_line: int = 1) -> float:
        """The marking time the board needs from `start_line` (speeds, distances, delays),
        each label's first jump from where the one before it ended."""
        from fabrication.lmc import list_seconds, unpack

        return list_seconds(unpack(b"".join(c for u in self.units_from(start_line) for c in u.commands)))

    def outline_bits(self) -> tuple[int, int, int, int]:
        """The rectangle around every mark and jump target, in galvo bits."""
        from fabrication.lmc import unpack

        points = [c[1:3] for u in self.units for c in unpack(b"".join(u.commands)) if c[0] in _MOVES]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return min(xs), min(ys), max(xs), max(ys)


_MOVES = (0x8001, 0x8005)  # listJumpTo, listMarkTo


def plan_job(lines: Sequence[str], settings: GalvoSettings, lens: LensField,
             mw_for_s: Callable[[float], float]) -> GalvoJob:
    """The job's units; refuses what a galvo cannot do, naming the line (a target outside the
    field, inches, incremental moves, a Z axis). `mw_for_s` reads the job's S words."""
    from galvo import consts as op

    from fabrication.lmc import (
        LASER_PORT_BIT,
        current_of_percent,
        delay_words,
        pack,
        qswitch_period,
        speed_bits_per_ms,
    )

    commands = {c.line: c.text for c in job_commands(lines)}
    if lens.centre_mm is None:
        targets = [(w["X"], w["Y"]) for t in commands.values() if {"X", "Y"} <= (w := words(t)).keys()]
        if not targets:
            raise PufError("the laser job moves nowhere: it has no X and Y targets")
        xs, ys = zip(*targets, strict=True)
        lens = replace(lens, centre_mm=((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2))
    bpm = lens.bits_per_mm
    header = [
        pack(op.listReadyMark),
        pack(op.listJumpSpeed, speed_bits_per_ms(settings.jump_speed_mm_s, bpm)),
        pack(op.listMarkSpeed, speed_bits_per_ms(settings.mark_speed_mm_s, bpm)),
        pack(op.listLaserOnDelay, *delay_words(settings.laser_on_delay_us)),
        pack(op.listLaserOffDelay, *delay_words(settings.laser_off_delay_us)),
        pack(op.listPolygonDelay, *delay_words(settings.polygon_delay_us)),
        pack(op.listJumpDelay, *delay_words(settings.jump_delay_us)),
        pack(op.listQSwitchPeriod, qswitch_period(settings.frequency_khz)),
        pack(op.listFiberYLPMPulseWidth, settings.pulse_width_ns),
        pack(op.listWritePort, 1 << LASER_PORT_BIT),
    ]
    units: list[Unit] = []
    current, beam_on, here = 0, False, None
    label: str | None = None
    body: list[bytes] = []
    unit_lines: list[int] = []
    first: int | None = None

    def close_unit() -> None:
        if label is not None and first is not None:
            units.append(Unit(first, label, tuple(unit_lines), (*header, pack(op.listMarkCurrent, start_current),
                                                                   *body, pack(op.listEndOfList))))

    start_current = 0
    for number, raw in enumerate(lines, start=1):
        if marker := _LABEL.match(raw):
            close_unit()
            label, body, unit_lines, first, start_current = marker[1], [], [], None, current
            continue
        text = commands.get(number)
        if text is None:
            continue
        found = _check_words(number, text)
        if "M" in found:
            beam_on = found["M"] in (3, 4)
        if "S" in found:
            new = current_of_percent(settings.power.setting_for_mw(mw_for_s(found["S"])))
            if new != current and label is not None:
                body.append(pack(op.listMarkCurrent, new))
            current = new
        if label is not None:
            if first is None:
                first, start_current = number, current
            unit_lines.append(number)
        if "X" not in found and "Y" not in found:
            continue
        target = (found.get("X", here[0] if here else 0.0), found.get("Y", here[1] if here else 0.0))
        bits = lens.to_bits(*target)
        if bits is None:
            raise PufError(f"line {number} ({text!r}) aims at ({target[0]:g}, {target[1]:g}) mm, outside the "
                           f"{lens.field_mm:g} mm lens field centred on job point {lens.centre_mm}: choose "
                           "another centre or a larger field")
        mark = found.get("G", 0) == 1 and beam_on and current > 0 and label is not None
        distance = 0 if here is None else min(0xFFFF, round(abs(complex(*bits) - complex(*here[2]))))
        body.append(pack(op.listMarkTo if mark else op.listJumpTo, bits[0], bits[1], 0, distance))
        here = (*target, bits)
    close_unit()
    return GalvoJob(tuple(units), lens, len(lines) + 1)


def _check_words(number: int, text: str) -> dict[str, float]:
    found = words(text)
    for letter, value in found.items():
        if letter in _ALLOWED and value not in _ALLOWED[letter]:
            raise PufError(f"line {number} ({text!r}): {letter}{value:g} is not something a galvo job does "
                           "(G0 G1 G21 G90 G94 M3 M4 M5 only)")
        if letter not in "GMXYSF":
            raise PufError(f"line {number} ({text!r}): the word {letter} means nothing to a galvo "
                           "(it moves in X and Y only)")
    return found


class _BoardError(Exception):
    """The board reported an error, went silent, or the connection dropped."""


def _usb_error(error: OSError, doing: str) -> _BoardError:
    if error.errno in (errno.ENODEV, errno.ENOENT, errno.ENXIO, errno.ESHUTDOWN):
        return _BoardError(f"the USB connection dropped while {doing} ({error})")
    if error.errno == errno.EPIPE:
        return _BoardError(f"the board reported an error (it halted the endpoint) while {doing}")
    if error.errno == errno.ETIMEDOUT:
        return _BoardError(f"the board did not answer while {doing}")
    return _BoardError(f"USB error while {doing}: {error}")


class GalvoLaser(Laser):
    """A BJJCZ LMC board. `open()` the Nth board on USB, or wrap any `UsbDevice`."""

    def __init__(self, device: UsbDevice, settings: GalvoSettings, lens: LensField,
                 mw_for_s: Callable[[float], float], *, name: str = "the galvo board",
                 timeout_ms: int = 1000, poll_s: float = 0.005, stall_margin_s: float = 2.0) -> None:
        """Connect: wait until a list a dead host left running has ended, then set the board up
        (laser enabled, source closed, ports off, no correction table: `lens.correction` is
        applied here; a list a dead host left half-written discarded). A busy board after
        `stall_margin_s` beyond a list's time counts as stalled."""
        self._device = device
        self.settings, self.lens, self._mw_for_s = settings, lens, mw_for_s
        self.name = name
        self._timeout_ms, self._poll, self._margin = timeout_ms, poll_s, stall_margin_s
        self._resume_line = 1
        self._plans: dict[int, GalvoJob] = {}
        from galvo import consts as op

        try:
            self._wait_idle(60.0, "waiting for a list left running to end")
            for command in ((op.EnableLaser,), (op.SetControlMode, 0), (op.SetLaserMode, 1),
                            (op.SetDelayMode, 1), (op.SetTiming, 1), (op.SetStandby, 2000, 20),
                            (op.SetFirstPulseKiller, 200), (op.SetPwmHalfPeriod, 125),
                            (op.SetPwmPulseWidth, 125), (op.Fiber_SetMo, 0), (op.WritePort, 0),
                            (op.WriteCorTable, 0), (op.ResetList,)):
                self._command(*command)
        except _BoardError as error:
            raise PufError(f"{name}: {error}; check the cable and the board's power") from None

    @classmethod
    def open(cls, index: int, settings: GalvoSettings, lens: LensField,
             mw_for_s: Callable[[float], float], **options) -> GalvoLaser:
        """The `index`-th BJJCZ board on USB (0: the first)."""
        import usb.core

        from fabrication.lmc import PRODUCT, VENDOR

        try:
            boards = list(usb.core.find(idVendor=VENDOR, idProduct=PRODUCT, find_all=True))
        except (usb.core.NoBackendError, usb.core.USBError) as error:
            raise PufError(f"cannot list USB devices ({error}): is libusb installed and may this "
                           "user open USB devices (a udev rule for 9588:9899)?") from None
        if index >= len(boards):
            raise PufError(f"no BJJCZ galvo board number {index} on USB (found {len(boards)}): "
                           "is it plugged in and powered?")
        device = boards[index]
        try:
            if device.is_kernel_driver_active(0):
                device.detach_kernel_driver(0)
            device.set_configuration()
            usb.util.claim_interface(device, 0)
        except (usb.core.USBError, NotImplementedError) as error:
            raise PufError(f"cannot claim the galvo board ({error}): is EzCAD or another program "
                           "using it?") from None
        return cls(device, settings, lens, mw_for_s, name=f"galvo board {index}", **options)

    @classmethod
    def open_served(cls, address: str, settings: GalvoSettings, lens: LensField,
                    mw_for_s: Callable[[float], float], **options) -> GalvoLaser:
        """A board whose USB transfers are served at `address` (see `fabrication.usb_socket`)."""

        device = UsbSocketDevice(address)
        try:
            return cls(device, settings, lens, mw_for_s, name=f"the board at {address}", **options)
        except BaseException:
            device.close()
            raise

    # ---- planning ----------------------------------------------------------------
    def plan(self, lines: Sequence[str]) -> GalvoJob:
        key = hash(tuple(lines))
        if key not in self._plans:
            self._plans[key] = plan_job(lines, self.settings, self.lens, self._mw_for_s)
        return self._plans[key]

    def check_job(self, lines: Sequence[str], start_line: int = 1,
                  progress: Progress | None = None) -> None:
        """Turn the whole job into lists: a line a galvo cannot run, or a target outside the
        field, is refused before anything is marked."""
        job = self.plan(lines)
        if progress is not None:
            for unit in job.units_from(start_line):
                for line in unit.lines:
                    progress(line)

    # ---- running -----------------------------------------------------------------
    def run_job(self, lines: Sequence[str], start_line: int = 1, progress: Progress | None = None,
                on_send: Progress | None = None, on_done: Progress | None = None) -> None:
        """Run the units from `start_line`, one list at a time. `on_send` hears of a unit (by its
        first line) before its list is written, `on_done` once the board reported it finished."""
        from galvo import consts as op

        from fabrication.lmc import LASER_PORT_BIT

        job = self.plan(lines)
        todo = job.units_from(start_line)
        self._resume_line = todo[0].line if todo else job.end_line
        if not todo:
            return
        unit = todo[0]
        try:
            self._command(op.Fiber_SetMo, 1)
            self._command(op.WritePort, 1 << LASER_PORT_BIT)
            for unit in todo:
                if on_send is not None:
                    on_send(unit.line)
                self._run_list(unit.commands, unit.seconds, f"marking label {unit.label}")
                if on_done is not None:
                    on_done(unit.line)
                if progress is not None:
                    for line in unit.lines:
                        progress(line)
                self._resume_line = job.next_line(unit)
            self._command(op.Fiber_SetMo, 0)
            self._command(op.WritePort, 0)
        except _BoardError as error:
            self._stop(job, unit, isinstance(error, _Started), str(error))
        except KeyboardInterrupt:
            self._stop(job, unit, True, "interrupted by the user")

    def _run_list(self, commands: Sequence[bytes], seconds: float, doing: str) -> None:
        """Write a list, run it, wait until the board says it ran. An error once the list may
        have begun (ExecuteList written, answered or not) is a `_Started`."""
        from galvo import consts as op

        from fabrication.lmc import list_packets

        began = False
        try:
            for index, packet in enumerate(list_packets(commands)):
                self._wait_ready(doing)
                self._write(packet, doing)
                self._command(op.SetEndOfList, 0)
                if index == 0:
                    began = True
                    self._command(op.ExecuteList)
            self._wait_idle(seconds * 2 + self._margin, doing)
        except _BoardError as error:
            if began:
                raise _Started(str(error)) from None
            raise

    def _stop(self, job: GalvoJob, unit: Unit, started: bool, reason: str) -> None:
        """Stop the list and switch the beam off, then raise: a unit that may have begun is
        skipped by the resume and named; one that had not is run again."""
        partly = unit.line if started else None
        resume = job.next_line(unit) if started else unit.line
        self._resume_line = resume
        where = (f"label {unit.label} was partly marked: the resume skips it, inspect it" if started
                 else f"label {unit.label} was not begun")
        raise LaserJobStopped(unit.line, f"label {unit.label}", f"{reason}; {where}", self.laser_off(),
                              resume, partly_done=partly)

    @property
    def resume_line(self) -> int:
        return self._resume_line

    def ran(self, lines: Sequence[str], line: int) -> bool | None:
        """Whether the unit starting at `line`, begun by a host that was killed, ran to its end
        (True) or not at all (False), by where the idle board's mirrors stand (GetPositionXY):
        at its last target, or still at the last target of the unit before it. None otherwise
        (a list cut off, or a board whose answer says something else): the cautious answer."""
        from galvo import consts as op

        from fabrication.lmc import position_of

        units = self.plan(lines).units
        index = next((i for i, unit in enumerate(units) if unit.line == line), None)
        if index is None:
            return None
        try:
            here = position_of(self._answer(op.GetPositionXY))
        except _BoardError as error:
            raise PufError(f"{self.name}: {error}; check the cable and the board's power") from None
        if here == units[index].end_bits:
            return True
        return False if index > 0 and here == units[index - 1].end_bits else None

    def laser_off(self) -> str:
        from galvo import consts as op

        from fabrication.lmc import BUSY, READ_ENDPOINT, WRITE_ENDPOINT

        try:
            for endpoint in (WRITE_ENDPOINT, READ_ENDPOINT):  # a halted endpoint takes nothing
                try:
                    self._device.clear_halt(endpoint)
                except OSError as error:
                    raise _usb_error(error, "clearing the halted endpoint") from None
            for command in ((op.StopExecute,), (op.Fiber_SetMo, 0), (op.WritePort, 0), (op.ResetList,)):
                self._command(*command)
            status = self._command(op.GetVersion)
        except _BoardError as error:
            return (f"The board did not confirm the laser is off ({error}): "
                    "switch the laser off at the machine")
        if status & BUSY:
            return "The board still reports a list running: switch the laser off at the machine"
        return "Laser off (list stopped, source closed, laser port off: each confirmed by the board)"

    def frame(self, lines: Sequence[str], passes: int = 3) -> float:
        """Trace the rectangle around the job with the red guide light only (the source stays
        closed and the laser port off), `passes` times; returns the seconds it took."""
        from galvo import consts as op

        from fabrication.lmc import LIGHT_PORT_BIT, delay_words, pack, speed_bits_per_ms

        x0, y0, x1, y1 = self.plan(lines).outline_bits()
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)] * passes + [(x0, y0)]
        commands = [pack(op.listReadyMark), pack(op.listJumpSpeed, speed_bits_per_ms(
                        self.settings.jump_speed_mm_s / 10, self.lens.bits_per_mm)),
                    pack(op.listJumpDelay, *delay_words(self.settings.jump_delay_us)),
                    pack(op.listWritePort, 1 << LIGHT_PORT_BIT)]
        commands += [pack(op.listJumpTo, x, y) for x, y in corners]
        commands += [pack(op.listWritePort, 0), pack(op.listEndOfList)]
        from fabrication.lmc import list_seconds, unpack

        seconds = list_seconds(unpack(b"".join(commands)))
        started = time.monotonic()
        try:
            self._command(op.Fiber_SetMo, 0)
            self._command(op.WritePort, 0)
            self._run_list(commands, seconds, "tracing the frame")
            self._command(op.WritePort, 0)
        except _BoardError as error:
            raise PufError(f"{self.name}: the frame stopped: {error}. {self.laser_off()}") from None
        except KeyboardInterrupt:  # Ctrl-C: the list stopped and the guide light off, then go on up
            self.laser_off()
            raise
        return time.monotonic() - started

    def close(self) -> None:
        if hasattr(self._device, "close"):  # a board served over a socket (fabrication.usb_socket)
            self._device.close()
            return
        try:
            import usb.util

            usb.util.dispose_resources(self._device)
        except (ImportError, OSError, TypeError, AttributeError):
            pass

    # ---- talking -----------------------------------------------------------------
    def _command(self, opcode: int, *params: int) -> int:
        """One single command, its 8-byte answer checked; returns the board's status word."""
        from fabrication.lmc import status_of

        return status_of(self._answer(opcode, *params))

    def _answer(self, opcode: int, *params: int) -> bytes:
        """One single command; returns its 8-byte answer, checked."""
        from fabrication.lmc import READ_ENDPOINT, REPLY_BYTES, pack

        doing = f"sending command {opcode:#06x}"
        self._write(pack(opcode, *params), doing)
        try:
            answer = bytes(self._device.read(READ_ENDPOINT, REPLY_BYTES, self._timeout_ms))
        except OSError as error:
            raise _usb_error(error, doing) from None
        if len(answer) != REPLY_BYTES:
            raise _BoardError(f"the board answered {len(answer)} bytes, not {REPLY_BYTES}, while {doing}")
        return answer

    def _write(self, data: bytes, doing: str) -> None:
        from fabrication.lmc import WRITE_ENDPOINT

        try:
            written = self._device.write(WRITE_ENDPOINT, data, self._timeout_ms)
        except OSError as error:
            raise _usb_error(error, doing) from None
        if written != len(data):
            raise _BoardError(f"the board took {written} of {len(data)} bytes while {doing}")

    def _status(self) -> int:
        from galvo import consts as op

        return self._command(op.GetVersion)

    def _wait_ready(self, doing: str) -> None:
        from fabrication.lmc import READY

        give_up = time.monotonic() + self._margin
        while not self._status() & READY:
            if time.monotonic() > give_up:
                raise _BoardError(f"the board did not take a list for {self._margin:g} s while {doing}")
            time.sleep(self._poll)

    def _wait_idle(self, seconds: float, doing: str) -> None:
        from fabrication.lmc import BUSY

        give_up = time.monotonic() + seconds
        while self._status() & BUSY:
            if time.monotonic() > give_up:
                raise _BoardError(f"the board stalled: still busy {seconds:.1f} s after starting, while {doing}")
            time.sleep(self._poll)


class _Started(_BoardError):
    """An error after the list may have begun to run."""
