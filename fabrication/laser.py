"""The laser role: one interface for every laser backend (GRBL over serial, galvo).

A job is a G-code program as `fabrication.gcode.laser_job_lines` writes it, one string
per file line, comments included. Backends send only the commands (comments and blank
lines stripped) but report and resume by the file's 1-based line numbers, so a message
like "stopped at line 1234" points into ``job.gcode`` as the user sees it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_app.errors import HardwareStopped, PufError

# GRBL 1.1 response codes (doc/csv/error_codes_en_US.csv and alarm_codes_en_US.csv).
GRBL_ERRORS: dict[int, str] = {
    1: "Expected command letter",
    2: "Bad number format",
    3: "Invalid '$' statement",
    4: "Negative value",
    5: "Homing not enabled",
    6: "Step pulse shorter than 3 us",
    7: "EEPROM read failed, defaults restored",
    8: "'$' command only valid when Idle",
    9: "G-code locked out during alarm or jog",
    10: "Soft limits need homing enabled",
    11: "Line overflow (too many characters)",
    12: "Step rate above 30 kHz",
    13: "Safety door open",
    14: "Line too long for EEPROM",
    15: "Jog target exceeds machine travel",
    16: "Invalid jog command",
    17: "Laser mode requires PWM output",
    20: "Unsupported or invalid g-code command",
    21: "Modal group violation",
    22: "Undefined feed rate",
    23: "Command requires an integer value",
    24: "More than one command that uses axis words",
    25: "Repeated g-code word",
    26: "No axis words for a command that needs them",
    27: "Invalid line number",
    28: "Missing a required value word",
    29: "G59.x work coordinate systems not supported",
    30: "G53 only allowed with G0 and G1",
    31: "Axis words found with no command that uses them",
    32: "Arc needs in-plane axis words",
    33: "Motion command target is invalid",
    34: "Arc radius is invalid",
    35: "Arc needs in-plane offset words",
    36: "Unused value words in block",
    37: "G43.1 offset not on the tool length axis",
    38: "Tool number above the maximum",
}
GRBL_ALARMS: dict[int, str] = {
    1: "Hard limit triggered; position likely lost, re-homing recommended",
    2: "Soft limit: motion target exceeds machine travel; position retained",
    3: "Reset while in motion; position likely lost, re-homing recommended",
    4: "Probe fail: probe not in the expected initial state",
    5: "Probe fail: probe did not contact the workpiece",
    6: "Homing fail: the homing cycle was reset",
    7: "Homing fail: safety door opened during homing",
    8: "Homing fail: pull-off did not clear the limit switch",
    9: "Homing fail: limit switch not found within the search distance",
    10: "Homing fail: second limit switch of a dual axis not found",
}


def describe_grbl(response: str) -> str:
    """``error:20`` -> ``error:20 (Unsupported or invalid g-code command)``."""
    match = re.fullmatch(r"(error|ALARM):(\d+)", response.strip())
    if not match:
        return response
    table = GRBL_ERRORS if match[1] == "error" else GRBL_ALARMS
    return f"{response.strip()} ({table.get(int(match[2]), 'unknown code')})"


class LaserJobStopped(HardwareStopped):
    """A job stopped before its end; the laser was switched off as far as the port allowed."""

    def __init__(self, line: int, command: str, reason: str, laser_state: str, resume_line: int,
                 partly_done: int | None = None):
        self.line = line  # 1-based job file line where the job stopped
        self.command = command
        self.reason = reason
        self.laser_state = laser_state
        self.resume_line = resume_line
        # the first line of a unit (a label) that ran partway and that the resume skips
        self.partly_done = partly_done
        super().__init__(
            f"the laser job stopped at line {line} ({command!r}): {reason}. {laser_state}. "
            f"It can resume from line {resume_line}."
        )


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line in the job file
    text: str  # the G-code, comments and surrounding blanks removed


_COMMENT = re.compile(r"\([^)]*\)|;.*")
_WORD = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))")
_AXES = "XYZ"


def job_commands(lines: Sequence[str]) -> list[Command]:
    """The commands of a job, numbered by their line in the file."""
    commands = []
    for number, line in enumerate(lines, start=1):
        text = _COMMENT.sub("", line).strip()
        if text:
            commands.append(Command(number, text))
    return commands


def words(text: str) -> dict[str, float]:
    """The letter -> value words of a G-code command (the last one wins if repeated)."""
    return {letter: float(value) for letter, value in _WORD.findall(text.upper())}


def is_motion(text: str) -> bool:
    """Whether a command moves the head (and so takes a slot in a motion planner)."""
    return any(axis in words(text) for axis in _AXES)


def restore_commands(commands: Sequence[Command], start_line: int) -> list[str]:
    """Commands that put a freshly reset controller where the job was just before `start_line`.

    They replay the job's modal set-up (units, distance mode, laser mode, feed) and then
    travel with the beam off (G0) to the last target before `start_line`, carrying the
    modal feed and power, so resuming at a G1 line burns from the right point.
    """
    target = position_after(commands, start_line - 1)
    setup: list[str] = []
    modal: dict[str, float] = {}
    for command in (c for c in commands if c.line < start_line):
        found = words(command.text)
        modal.update({k: v for k, v in found.items() if k in "FS"})
        if not any(axis in found for axis in _AXES):
            setup.append(command.text)
    if target:
        travel = " ".join(f"{axis}{target[axis]:.4f}" for axis in _AXES if axis in target)
        extra = "".join(f" {k}{modal[k]:g}" for k in "FS" if k in modal)
        setup.append(f"G0 {travel}{extra}")
    return setup


def position_after(commands: Sequence[Command], line: int) -> dict[str, float]:
    """Where the job's moves up to file line `line` leave the head (the axes they name, in
    the job's coordinates); a job in incremental moves (G91) is refused, as it has no such
    position without running it from its start."""
    target: dict[str, float] = {}
    for command in commands:
        if command.line > line:
            break
        if any(k == "G" and float(v) == 91 for k, v in _WORD.findall(command.text.upper())):
            raise PufError(
                f"line {command.line} switches to incremental moves (G91): such a job "
                "can only be run from its start"
            )
        target.update({k: v for k, v in words(command.text).items() if k in _AXES})
    return target


def job_outline(lines: Sequence[str]) -> tuple[float, float, float, float]:
    """The rectangle (x0, y0, x1, y1, in the job's mm) around every move that burns: a G1 with
    the beam on (M3 or M4) at an S above 0, from where the move before it ended."""
    x = y = 0.0
    motion, beam, power = 0.0, False, 0.0
    xs: list[float] = []
    ys: list[float] = []
    for command in job_commands(lines):
        found = words(command.text)
        motion = found.get("G", motion) if found.get("G") in (0, 1) else motion
        beam = found["M"] in (3, 4) if found.get("M") in (3, 4, 5) else beam
        power = found.get("S", power)
        x1, y1 = found.get("X", x), found.get("Y", y)
        if motion == 1 and beam and power > 0 and (x1, y1) != (x, y):
            xs += [x, x1]
            ys += [y, y1]
        x, y = x1, y1
    if not xs:
        raise PufError("the job burns nothing: it has no outline to trace")
    return min(xs), min(ys), max(xs), max(ys)


Progress = Callable[[int], None]  # called with a job line (accepted, or about to be sent)


class Laser(ABC):
    """A laser that runs G-code jobs. Implementations: `GrblLaser`, `GalvoLaser`."""

    @abstractmethod
    def check_job(self, lines: Sequence[str], start_line: int = 1,
                  progress: Progress | None = None) -> None:
        """Have the controller check the job from `start_line` without moving or firing;
        raises `PufError` naming the lines it would reject."""

    @abstractmethod
    def run_job(self, lines: Sequence[str], start_line: int = 1, progress: Progress | None = None,
                on_send: Progress | None = None, on_done: Progress | None = None) -> None:
        """Run the job from file line `start_line` (1-based) to its end and wait until done.

        `progress` hears of each job line the controller accepted; `on_send` of each job line
        just before it is written, and the line is written only when `on_send` returns (a
        journal that must know what a killed host may have left in the controller). A backend
        that runs the job in units (a galvo: one list per label) tells `on_send` of a unit's
        first line before its list goes out and `on_done` once the board finished it.
        Raises `LaserJobStopped` (laser off, resumable) when the controller rejects a
        command, raises an alarm, is interrupted, or the connection drops.
        """

    @property
    @abstractmethod
    def resume_line(self) -> int:
        """The earliest job line that may not have been executed yet (for a crash-safe state)."""

    def ran(self, lines: Sequence[str], line: int) -> bool | None:
        """Whether job line `line`, a move, was the last one the idle machine ran (False: the
        one before it was), judged by where the head stands; None when it cannot tell."""
        return None

    @abstractmethod
    def frame(self, lines: Sequence[str], passes: int) -> float:
        """Trace the rectangle around the job without marking anything (a guide light, or the
        head moving with the beam off), `passes` times; returns the seconds it took."""

    @abstractmethod
    def laser_off(self) -> str:
        """Stop motion and switch the beam off now; says what the controller confirmed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def __enter__(self) -> Laser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
