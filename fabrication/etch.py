"""`puf etch`: run a designed batch's laser job on a GRBL controller, a BJJCZ galvo board
(``--laser galvo``), or the simulated film through either.

Reads what `puf design` wrote:

  BATCH_DIR/layout.json                   the batch layout
  BATCH_DIR/laser/job.gcode               the G-code job
  BATCH_DIR/laser/job.json                power, S value and machine frame of the job
  BATCH_DIR/laser/power_calibration.json  the S -> mW table the job was written with

With ``--sim`` it writes BATCH_DIR/sim/film.npz and BATCH_DIR/sim/rig.cfg (the simulated
microscope over that film, for ``puf photograph --mm-config``). It keeps
BATCH_DIR/laser/etch_state.json (status, the line to resume from, lines a crash
left uncertain), written atomically and durably, so ``--resume`` goes on after an error,
an alarm or a dropped port. A batch etched to its end is not etched again without ``--force``
(on a laser that would mark every label a second time). On a controller, BATCH_DIR/laser/etch_journal records every
job line before it is written (see `fabrication.etch_journal`), so ``--resume`` after a
kill or a power cut burns no line twice: it waits until the controller has run what it
holds, goes on after the last line written, and names the one line it cannot be sure of.
A galvo runs the job a label at a time (see `fabrication.galvo`); its journal records each
label begun and finished, so a resume never marks a finished label again and skips (and
names) one an error or a kill cut off. ``--frame`` traces the job's outline with a galvo's
guide light only, or with GRBL's beam off (M5). ``--sim`` streams the same job through the
simulated GRBL controller (or the simulated galvo board) into the simulated film, saved as
BATCH_DIR/sim/film.npz (that controller dies with this process, so a run cut off there
resumes where it started; ``--board-socket`` drives a board served on a socket, which
outlives it); ``--film-style`` chooses how a new film looks (grain size, contrast, facets, mottling).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path

from tqdm import tqdm

from edge_app.atomic_write import replacing
from edge_app.errors import PufError
from fabrication.batch_dir import BatchDir
from fabrication.etch_journal import JournalError, SendJournal, last_done, last_sent
from fabrication.galvo import GalvoLaser
from fabrication.galvo_options import GalvoOptions, check_same_galvo, galvo_record, galvo_settings
from fabrication.gcode import MachineFrame
from fabrication.grbl import GrblLaser
from fabrication.laser import LaserJobStopped, is_motion, job_commands
from fabrication.laser_power import PowerCalibration
from fabrication.sim.film import DEFAULT_STYLE, EtchedFilm, FilmStyle
from fabrication.sim.grbl_device import DEFAULT_SETTINGS, GrblEngine, LoopbackPort
from fabrication.sim.laser import SimulatedLaserHead

STATE_FILE = "etch_state.json"
JOURNAL_FILE = "etch_journal"
_LABEL = re.compile(r";\s*label (\S+)")


@dataclass(frozen=True)
class EtchOptions:
    """How to etch a batch (the `puf etch` options): on the simulated film (`sim`), a GRBL
    controller's serial `port`, or a galvo `board` (the Nth on USB) or one served on
    `board_socket`; `laser` is "grbl" or "galvo"; `frame` only traces the outline, for
    `frame_seconds` or until Ctrl-C. `resume` goes
    on where the last etch stopped, `from_line` starts at a job line; `force` etches a batch already
    etched to its end again; `check` runs GRBL's dry run first. `film_seed` and `film_style` make a
    new simulated film; `as_json` prints the summary as JSON."""

    sim: bool
    port: str | None
    board: int | None
    board_socket: str | None
    laser: str
    frame: bool
    frame_seconds: float | None
    galvo: GalvoOptions
    baud: int
    resume: bool
    from_line: int | None
    force: bool
    check: bool
    unlock: bool
    film_seed: int | None
    film_style: str | None
    as_json: bool


def etch_batch(batch_dir: Path, options: EtchOptions) -> None:
    """Run the batch's laser job (or trace its outline), keeping the etch state and, on a
    controller, the send journal; print the summary. A stop raises `PufError` naming the
    command that goes on."""
    batch = _Batch(batch_dir)
    state_path = batch.laser_dir / STATE_FILE
    _check_options(options)
    galvo = options.laser == "galvo"
    target = _target(options)
    previous = _read_state(state_path)
    start_line = _start_line(options, previous, len(batch.lines), batch.layout.batch_id)
    if start_line is None:
        _print_done(batch, previous["uncertain"] if previous else [])
        return
    # the state of a run cut off mid-job, when resuming one
    crashed = previous if options.resume and previous is not None and previous.get("status") == "running" else None
    if crashed is not None and (crashed.get("target") == "--sim") != options.sim:
        raise PufError(f"the last etch of batch {batch.layout.batch_id} was cut off on "
                       f"{crashed.get('target')}: go on there")

    film = film_path = None
    if options.sim:
        film, film_path = _film(batch.dir, batch.layout.batch_id, options.film_seed, options.film_style,
                                start_line)
        if crashed is not None and len(film.segments) != crashed.get("film_segments"):
            raise PufError(f"{film_path} was saved after the etch state: it may hold the whole "
                           "last run; check it and choose where to go on with --from-line")
    laser = open_laser(options, batch, film)
    uncertain = list(previous.get("uncertain", [])) if previous and options.resume else []
    with laser:
        if options.frame:
            _frame(laser, batch, "the guide light" if galvo else "the beam off (M5)", options)
            return

        marking = galvo_record(laser.settings, laser.plan(batch.lines).lens) if galvo else None
        if options.resume and previous is not None and "galvo" in previous:  # older states lack it
            check_same_galvo(batch.layout.batch_id, previous["galvo"], marking)
        if crashed is not None and not options.sim:
            start_line, note = _after_crash(crashed, batch, laser, uncertain)
            if not options.as_json:
                print(note)
        if start_line > len(batch.lines):
            _write_state(state_path, {**(previous or {}), "status": "done", "resume_line": start_line,
                                      "uncertain": uncertain, "message": ""})
            _print_done(batch, uncertain)
            return
        todo = sum(1 for c in job_commands(batch.lines) if c.line >= start_line)
        expected = laser.plan(batch.lines).seconds(start_line) if galvo else None
        if expected is not None and not options.as_json:
            print(f"expected marking time: {expected:.1f} s (speeds, distances and delays of the lists)")
        if options.check:
            with _bar(todo, f"check {batch.layout.batch_id}") as bar:
                laser.check_job(batch.lines, start_line, lambda _: bar.update(1))
        state = {"batch_id": batch.layout.batch_id, "job_lines": len(batch.lines), "target": target,
                 "start_line": start_line, "resume_line": start_line, "status": "running",
                 "run": secrets.token_hex(8), "uncertain": uncertain, "message": "",
                 "film_segments": None if film is None else len(film.segments), "galvo": marking}
        _write_state(state_path, state)
        started = time.perf_counter()
        _run_job(laser, batch, start_line, todo, state, state_path, film, film_path)
    seconds = time.perf_counter() - started
    if film is not None:
        film.save(film_path)
    state.update(status="done", resume_line=len(batch.lines) + 1, message="")
    _write_state(state_path, state)
    rig = None if film is None else _write_rig_config(batch.dir)
    _report(batch, start_line, todo, seconds, state_path, film, film_path, uncertain, options.as_json, expected, rig,
            galvo)


def _check_options(options: EtchOptions) -> None:
    """Refuse options that do not go together (before anything is opened)."""
    if options.film_style is not None and not options.sim:
        raise PufError("--film-style chooses the simulated film: use it with --sim")
    if options.frame_seconds is not None and not (options.frame and 0 <= options.frame_seconds < 86400):
        raise PufError("--frame-seconds is how long --frame traces the outline: 0 (once) up to a day")
    galvo = options.laser == "galvo"
    board = options.board is not None or options.board_socket is not None
    if (options.port is not None and galvo) or (board and not galvo):
        raise PufError("--port is a GRBL controller's, --board a galvo board's: choose --laser to match")
    if galvo:
        if find_spec("galvo") is None or find_spec("usb") is None:
            raise PufError("--laser galvo needs the galvo extra: pip install 'puf-labels[galvo]'")


def _target(options: EtchOptions) -> str:
    """The options that name the laser, as a command that goes on must repeat them."""
    target = ("--sim" if options.sim else f"--port {options.port}" if options.port else
              f"--board {options.board}" if options.board is not None else
              f"--board-socket {options.board_socket}")
    return target + (" --laser galvo" if options.laser == "galvo" else "")


def open_laser(options: EtchOptions, batch: _Batch, film=None):
    """The laser the options name, opened (use it with `with`), as `open_camera` opens a camera:
    the simulated controller or galvo board engraving `film` (with --sim), a galvo board on USB
    or served on a socket, or a GRBL controller on a serial port."""
    galvo = options.laser == "galvo"
    if film is not None:
        return _simulated_galvo(film, batch, options.galvo) if galvo else _simulated_laser(film, batch)
    if galvo:
        settings = galvo_settings(options.galvo, batch.job)
        if options.board is not None:
            return GalvoLaser.open(options.board, *settings, batch.calibration.mw_for_s)
        if options.board_socket is not None:
            return GalvoLaser.open_served(options.board_socket, *settings, batch.calibration.mw_for_s)
        raise PufError("--laser galvo etches on a board: give --board or --board-socket")

    if options.port is None:
        raise PufError("choose where to etch: --sim, --port, --board or --board-socket")
    return GrblLaser.open(options.port, options.baud, unlock=options.unlock, s_max=batch.calibration.s_max)


def _run_job(laser, batch: _Batch, start_line: int, todo: int, state: dict, state_path: Path,
             film, film_path: Path | None) -> None:
    """Run the job from `start_line`; a stop saves the film and the state (what a crash left
    uncertain too) and raises PufError naming the command that goes on."""

    resume = f"puf etch {batch.dir} {state['target']} --resume"
    try:
        with _bar(todo, f"etch {batch.layout.batch_id}") as bar, _journal(batch, state) as journal:
            laser.run_job(batch.lines, start_line, lambda _: bar.update(1), journal,
                          journal.done if journal is not None else None)
    except LaserJobStopped as stop:
        if film is not None:
            film.save(film_path)
        if stop.partly_done is not None:
            state["uncertain"].append(_uncertain(batch, stop.partly_done))
        state.update(status="stopped", resume_line=stop.resume_line, message=str(stop))
        _write_state(state_path, state)
        unlock = " --unlock" if "ALARM" in stop.laser_state else ""
        raise PufError(f"{stop}\nFix the cause, then go on with: {resume}{unlock}") from None
    except JournalError as error:  # lines may be on their way: the journal knows which
        raise PufError(f"{error}\nFree the disk, then go on with: {resume}") from None
    except PufError as error:  # refused before anything was sent
        state.update(status="stopped", message=str(error))
        _write_state(state_path, state)
        raise


def _frame(laser, batch: _Batch, how: str, options: EtchOptions) -> None:
    """Trace the job's outline again and again, as LightBurn's and EzCAD's frame does, so the
    operator can place the sheet: for `options.frame_seconds` (at least once), else until
    Ctrl-C. Nothing is marked."""
    batch_id = batch.layout.batch_id
    passes, stopped_by = 0, "--frame-seconds"
    started = time.monotonic()
    try:
        if options.frame_seconds is None:
            print(f"tracing the outline of batch {batch_id} with {how}: Ctrl-C stops", file=sys.stderr, flush=True)
        while True:
            laser.frame(batch.lines, passes=1)
            passes += 1
            if options.frame_seconds is not None and time.monotonic() - started >= options.frame_seconds:
                break
    except KeyboardInterrupt:
        stopped_by = "Ctrl-C"
    seconds = time.monotonic() - started
    if options.as_json:
        print(json.dumps({"batch_id": batch_id, "status": "framed", "passes": passes, "seconds": round(seconds, 2),
                          "with": how, "stopped_by": stopped_by, "marked": False}))
    else:
        print(f"traced the outline of batch {batch_id} {passes} time(s) with {how} in {seconds:.1f} s "
              f"(stopped by {stopped_by}); nothing was marked")


def _write_rig_config(batch_dir: Path) -> Path | None:
    """BATCH_DIR/sim/rig.cfg: the simulated microscope over the etched film as Micro-Manager
    devices, for `puf photograph --mm-config`; written only where the microscope extra
    (pymmcore-plus) can load it."""
    if find_spec("pymmcore_plus") is None:
        return None
    from fabrication.sim.mm_rig import rig_config  # pymmcore-plus

    path = BatchDir(batch_dir).rig_config_path
    try:
        text = rig_config(batch_dir)
    except ValueError as error:  # a folder name the configuration format cannot hold
        print(f"no {path}: {error}", file=sys.stderr)
        return None
    try:
        with replacing(path) as tmp:
            tmp.write_text(text)
    except OSError as error:
        raise PufError(f"the film is etched, but {path} cannot be written: {error.strerror or error}") from None
    return path


def _uncertain(batch: _Batch, line: int) -> dict:
    """A job line (a unit's first) that may have been etched only in part, for inspection."""
    command = next(c.text for c in job_commands(batch.lines) if c.line == line)
    return {"line": line, "command": command, "label": _label_of(batch.lines, line)}


def _journal(batch: _Batch, state: dict) -> contextlib.AbstractContextManager:
    """The send journal of a run on a controller that outlives this process; the simulated
    controller in this process dies with it and needs none."""
    if state["film_segments"] is not None:
        return contextlib.nullcontext(None)
    return SendJournal(batch.laser_dir / JOURNAL_FILE, state["run"])


def _after_crash(previous: dict, batch: _Batch, laser, uncertain: list[dict]) -> tuple[int, str]:
    """Where to go on after a run that was cut off (killed, crashed, power lost) and what
    to tell the operator. The controller has run every line it received (connecting waited
    until it was idle); the journal says which lines those are, up to its last one, which
    may or may not have been written: the head's position decides, and when it cannot,
    that line is skipped (never burned twice) and named in `uncertain` for inspection."""
    last = last_sent(batch.laser_dir / JOURNAL_FILE, str(previous.get("run")))
    finished = last_done(batch.laser_dir / JOURNAL_FILE, str(previous.get("run")))
    cut_off = f"the last etch of batch {batch.layout.batch_id} was cut off"
    if last is None:
        start = int(previous["start_line"])
        return start, f"{cut_off} before it sent a line: going on from line {start}"
    command = next(c.text for c in job_commands(batch.lines) if c.line == last)
    where = f"line {last} ({command!r}, label {_label_of(batch.lines, last)})"
    ran = True if finished == last else laser.ran(batch.lines, last) if is_motion(command) else True
    if ran is None:  # a galvo goes on after the unit this line begins
        uncertain.append(_uncertain(batch, last))
        return last + 1, (f"{cut_off}; the controller ran what it held. {where} may or may not have "
                          f"run: it is skipped, not burned twice. Inspect label "
                          f"{_label_of(batch.lines, last)}; going on from line {last + 1}")
    start = last + 1 if ran else last
    return start, (f"{cut_off}; the controller ran what it held, up to {where}, which "
                   f"{'ran' if ran else 'had not been sent'}: going on from line {start}")


def _label_of(lines: list[str], line: int) -> str:
    """The label a job line etches (the job names each label in a comment before it)."""
    for text in reversed(lines[:line]):
        if found := _LABEL.match(text):
            return found[1]
    return "none (set-up)"


def _report(batch: _Batch, start_line: int, todo: int, seconds: float, state_path: Path,
            film, film_path: Path | None, uncertain: list[dict], as_json: bool,
            expected_s: float | None, rig: Path | None, galvo: bool) -> None:
    summary = {
        "batch_id": batch.layout.batch_id, "status": "done", "start_line": start_line,
        "lines_sent": todo, "seconds": round(seconds, 2),
        "lines_per_s": round(todo / seconds) if seconds > 0 else None,
        "power_mw": batch.job["power_mw"], "s_value": batch.job["s_value"],
        "state": str(state_path), "uncertain": uncertain,
    }
    if expected_s is not None:
        summary["expected_marking_s"] = round(expected_s, 3)
    if film is not None:
        summary.update(film=str(film_path), segments=len(film.segments), film_style=asdict(film.style),
                       rig_config=None if rig is None else str(rig))
    if as_json:
        print(json.dumps(summary))
        return
    if galvo:  # the board marks whole labels, from lists made of the job's lines
        labels = sum(1 for text in batch.lines[start_line - 1:] if _LABEL.match(text))
        print(f"marked batch {batch.layout.batch_id}: {labels} labels (job lines {start_line}-{len(batch.lines)}) "
              f"in {seconds:.1f} s at {batch.job['power_mw']:g} mW")
    else:
        print(f"etched batch {batch.layout.batch_id}: {todo} G-code lines from line {start_line} "
              f"in {seconds:.1f} s at {batch.job['power_mw']:g} mW (S{batch.job['s_value']:g})")
    if film is not None:
        style = ", ".join(f"{k} {v}" for k, v in summary["film_style"].items())
        print(f"film:  {film_path} ({summary['segments']} engraved segments; {style})")
        if rig is not None:
            print(f"rig:   {rig} (puf photograph {batch.dir} --mm-config {rig})")
    _print_uncertain(uncertain)
    print(f"state: {state_path}")


def _print_done(batch: _Batch, uncertain: list[dict]) -> None:
    print(f"nothing to resume: batch {batch.layout.batch_id} was etched to its end")
    _print_uncertain(uncertain)


def _print_uncertain(uncertain: list[dict]) -> None:
    for line in uncertain:
        print(f"inspect label {line['label']}: line {line['line']} ({line['command']!r}) was cut off by a "
              "crash and may not have been etched")


class _Batch:
    """What `puf design` wrote for the laser, read and checked."""

    def __init__(self, batch_dir: Path) -> None:
        folder = BatchDir(batch_dir)
        self.dir = batch_dir
        self.laser_dir = folder.laser_dir
        if not folder.has_design() or not folder.laser_job_path.exists():
            raise PufError(f"{batch_dir} has no layout.json and laser/job.gcode: "
                           f"run 'puf design {batch_dir}' first")
        self.layout = folder.layout()
        self.lines = _read_job(folder.laser_job_path)
        self.job = _read_job_settings(folder.laser_settings_path)
        self.calibration = PowerCalibration.load(folder.power_calibration_path)
        self.frame = MachineFrame(**self.job["frame"])


def _bar(total: int, desc: str):
    return tqdm(total=total, unit="line", desc=desc, disable=None)


def _read_job(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PufError(f"cannot read the laser job {path}: {error}") from None


def _read_job_settings(path: Path) -> dict:
    try:
        job = json.loads(path.read_text())
        frame = job["frame"]
        return {"power_mw": float(job["power_mw"]), "s_value": float(job["s_value"]),
                "frame": {"origin_x_mm": float(frame["origin_x_mm"]),
                          "origin_y_mm": float(frame["origin_y_mm"])},
                "galvo": {k: float(v) for k, v in job.get("galvo", {}).items()
                          if k in ("mark_speed_mm_s", "jump_speed_mm_s")}}
    except FileNotFoundError:
        raise PufError(f"no {path}: run 'puf design' again to write the laser job") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PufError(f"cannot read {path}: {error!r}") from None


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise PufError(f"cannot read the etch state {path}: {error}; "
                       "remove it to start again") from None


def _write_state(path: Path, state: dict) -> None:
    """Replace the state atomically and durably: a run's journal is only read under the
    state that names its run."""
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(state, indent=1))


def _start_line(options: EtchOptions, previous: dict | None, job_lines: int,
                batch_id: str) -> int | None:
    """The job line to start at (None: nothing left to do). A batch etched to its end is
    etched again only with `force`: on a laser that marks every label a second time."""
    if (previous is not None and previous.get("status") == "done" and not options.force
            and not options.resume and not options.frame):
        raise PufError(f"batch {batch_id} was etched to its end on {previous.get('updated', 'an unknown date')} "
                       f"({previous.get('target', 'unknown target')}): etching it again marks every label a "
                       "second time; give --force to etch it again")
    if options.from_line is not None:
        if not 1 <= options.from_line <= job_lines:
            raise PufError(f"--from-line must be between 1 and {job_lines}, the job's lines")
        return options.from_line
    unfinished = previous is not None and previous.get("status") != "done"
    if not options.resume:
        if previous is not None and unfinished:
            raise PufError(
                f"the last etch of batch {batch_id} did not finish "
                f"({previous.get('message') or previous.get('status')}); go on with --resume, "
                "or start again with --from-line 1"
            )
        return 1
    if previous is None:
        raise PufError(f"nothing to resume: batch {batch_id} has no {STATE_FILE}")
    if not unfinished:
        return None
    if previous.get("job_lines") != job_lines:
        raise PufError(
            f"laser/job.gcode has {job_lines} lines but had {previous.get('job_lines')} when the "
            "etch stopped: the job changed; choose where to go on with --from-line"
        )
    return int(previous["resume_line"])


def _film(batch_dir: Path, batch_id: str, seed: int | None, style_text: str | None, start_line: int):
    """The simulated film to etch: a new one from the start, the saved one to go on."""
    style = DEFAULT_STYLE if style_text is None else FilmStyle.parse(style_text)
    path = BatchDir(batch_dir).film_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if start_line == 1:
        return EtchedFilm(zlib.crc32(batch_id.encode()) if seed is None else seed, style=style), path
    film = EtchedFilm.load(path)
    if seed is not None and seed != film.seed:
        raise PufError(f"{path} has film seed {film.seed}, not {seed}: "
                       "going on etches the same film")
    if style_text is not None and style != film.style:
        raise PufError(f"{path} is a film of style {film.style}, not {style}: going on etches the same film")
    return film, path


def _simulated_galvo(film, batch: _Batch, options: GalvoOptions):
    """The galvo driver on the simulated LMC board, whose marks engrave `film`."""
    settings, lens = galvo_settings(options, batch.job)
    from fabrication.sim.galvo_board import SimulatedGalvoHead, SimulatedLmcBoard  # galvoplotter

    board = SimulatedLmcBoard()
    laser = GalvoLaser(board, settings, lens, batch.calibration.mw_for_s, name="the simulated galvo board")
    lens = laser.plan(batch.lines).lens  # its centre resolved: where the marks land
    board.on_mark = SimulatedGalvoHead(film, lens, settings.power, batch.frame).mark
    return laser


def _simulated_laser(film, batch: _Batch):
    """The GRBL driver on the simulated controller, whose beam engraves `film`."""
    head = SimulatedLaserHead(film, batch.calibration, batch.frame)
    s_max = batch.calibration.s_max
    engine = GrblEngine(head.burn, settings={**DEFAULT_SETTINGS, 30: s_max})
    return GrblLaser(LoopbackPort(engine), name="the simulated GRBL controller", s_max=s_max)
