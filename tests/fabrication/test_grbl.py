"""The GRBL laser driver against the simulated GRBL 1.1 controller on a real pseudo-terminal,
opened with real pyserial; and `puf etch` end to end."""

import json
import re
import signal
import subprocess
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
import serial

from edge_app.cli import main as puf
from edge_app.errors import PufError
from fabrication.grbl import GrblLaser
from fabrication.laser import LaserJobStopped, job_commands, job_outline
from fabrication.sim.film import EtchedFilm
from fabrication.sim.grbl_device import DEFAULT_SETTINGS, GrblEngine, LoopbackPort, PtyGrbl
from tests.batch_support import make_job, make_layout, write_batch
from tests.faults import ROOT, puf_command

# Wall seconds per second of simulated motion: the test job's moves take about 1 s at
# F600, 50 ms at this scale, ten times longer than streaming it, so the 15-block motion
# planner fills up and holds acknowledged moves, as it does on a real machine.
SLOW = 0.05


def clean_burns(lines: list[str]) -> list[tuple[float, ...]]:
    """What a correct controller fires for a job: every G1 from the previous target."""
    x = y = 0.0
    burns = []
    for line in lines:
        move = re.match(r"(G[01]) X(\S+) Y(\S+)", line)
        if move:
            x1, y1 = float(move[2]), float(move[3])
            if move[1] == "G1":
                burns.append((x, y, x1, y1, 270.0))
            x, y = x1, y1
    return burns


def as_set(burns) -> set[tuple[float, ...]]:
    return {tuple(round(v, 6) for v in burn) for burn in burns}


def end_of_a_pass(lines: list[str], after: int) -> int:
    """Index of the first command after command `after` that ends a laser pass (a G1
    followed by a G0). Faults go there: a controller runs the lines behind a rejected
    one until the driver's feed hold lands, and behind a pass's end they burn nothing
    wrong, so the burns of a stopped and resumed job can be compared exactly."""
    commands = job_commands(lines)
    return next(i for i in range(after, len(commands) - 1)
                if commands[i].text.startswith("G1") and commands[i + 1].text.startswith("G0"))


@contextmanager
def controller(**options):
    burns: list[tuple[float, ...]] = []
    engine = GrblEngine(lambda *burn: burns.append(burn), **options)
    with PtyGrbl(engine) as device:
        yield device, engine, burns


@contextmanager
def connected(device, **options):
    laser = GrblLaser.open(device.device_path, answer_timeout_s=2.0, poll_s=0.05, **options)
    try:
        yield laser
    finally:
        laser.close()


def test_a_full_job_is_streamed_and_every_burn_fired():
    lines = make_job()
    acked = []
    with controller() as (device, engine, burns), connected(device) as laser:
        laser.run_job(lines, progress=acked.append)
    np.testing.assert_allclose(np.array(burns), np.array(clean_burns(lines)), atol=1e-9)
    assert acked == [c.line for c in job_commands(lines)]
    assert engine.state == "Idle" and engine.spindle == "M5"


def test_flow_control_fills_but_never_overflows_the_128_byte_buffer():
    lines = make_job()
    with controller(time_scale=SLOW) as (device, engine, burns), connected(device) as laser:
        laser.run_job(lines)
        # run_job returns only once the machine is Idle: every move has run
        assert engine.state == "Idle" and len(burns) == len(clean_burns(lines))
    assert engine.rx_dropped == 0
    assert 100 <= engine.rx_high_water <= 127  # several lines in flight, never more than fit


def test_the_simulated_controller_notices_a_host_that_overflows_it():
    lines = [c.text for c in job_commands(make_job())]
    with controller(time_scale=SLOW) as (device, engine, _):
        with serial.Serial(device.device_path, 115200, timeout=0.2) as port:
            port.write("".join(line + "\n" for line in lines).encode())  # no flow control
            port.read(10_000)
    assert engine.rx_dropped > 0


def test_a_rejected_line_stops_the_job_with_the_laser_off_and_names_the_line():
    lines = make_job()
    index = end_of_a_pass(lines, 50)
    bad = job_commands(lines)[index]
    with controller(time_scale=SLOW, fail_at_line=index + 1) as (device, engine, burns), \
            connected(device) as laser:
        with pytest.raises(LaserJobStopped) as stop:
            laser.run_job(lines)
        fired = len(burns)
        assert engine.state == "Idle" and engine.spindle == "M5" and not engine.laser_firing
        assert engine.parser_state().split()[6] == "M5"
    assert isinstance(stop.value, PufError)
    assert stop.value.line == bad.line and stop.value.command == bad.text
    message = str(stop.value)
    assert f"line {bad.line}" in message
    assert "error:20 (Unsupported or invalid g-code command)" in message
    assert "Laser off (M5 confirmed)" in message
    assert fired < len(clean_burns(lines))


def test_resume_goes_on_from_the_earliest_line_that_may_not_have_run():
    lines = make_job()
    fail_at = end_of_a_pass(lines, 50) + 1
    with controller(time_scale=SLOW, fail_at_line=fail_at) as (device, engine, burns), \
            connected(device) as laser:
        with pytest.raises(LaserJobStopped) as stop:
            laser.run_job(lines)
        # lines acknowledged before the error were still queued in the planner when the
        # reset flushed it: the job resumes before them, not at the rejected line
        assert stop.value.resume_line < stop.value.line
        laser.run_job(lines, start_line=stop.value.resume_line)
    assert as_set(burns) == as_set(clean_burns(lines))
    assert engine.state == "Idle" and engine.spindle == "M5"


def test_the_check_pass_finds_bad_lines_before_anything_is_etched():
    lines = make_job()
    good = lines[40], lines[90]
    lines[40] += " E5"  # an extruder word from a 3D-printer profile
    lines[90] = lines[90].replace("X", "X-")  # left of the machine's X travel
    with controller() as (device, engine, burns):
        with connected(device) as laser, pytest.raises(PufError) as error:
            laser.check_job(lines)
        assert burns == [] and engine.state == "Alarm"  # a soft limit locks even in check mode
        lines[40], lines[90] = good
        with connected(device, unlock=True) as laser:
            laser.check_job(lines)
            assert engine.state == "Idle"
            laser.run_job(lines)
    message = str(error.value)
    assert "line 41 ('G1" in message and "error:20 (Unsupported" in message
    assert "line 91" in message and "ALARM:2 (Soft limit" in message
    assert "Nothing was etched" in message and "locked in ALARM" in message
    np.testing.assert_allclose(np.array(burns), np.array(clean_burns(lines)), atol=1e-9)


def test_a_dropped_port_is_a_clear_error_naming_the_line():
    lines = make_job()
    with controller(time_scale=SLOW, drop_after_lines=50) as (device, _, _), \
            connected(device) as laser:
        with pytest.raises(PufError) as error:
            laser.run_job(lines)
    message = str(error.value)
    assert "dropped" in message and "make sure it is off" in message
    # it names the first line whose "ok" never came: the 50th, at which the port dropped, or an
    # earlier one still waiting for room in the planner when it dropped (the later, the likelier)
    stopped, resume = (int(n) for n in re.search(r"stopped at line (\d+).*resume from line (\d+)", message).groups())
    assert resume <= stopped <= job_commands(lines)[49].line


def test_a_controller_in_spindle_mode_is_refused_before_any_move():
    settings = {**DEFAULT_SETTINGS, 32: 0}
    with controller(settings=settings) as (device, engine, burns):
        with pytest.raises(PufError, match=r"not in laser mode \(\$32=0\).*G0 travel"):
            GrblLaser.open(device.device_path, answer_timeout_s=2.0)
    assert engine.gcode_lines == 0 and burns == []


def test_a_controller_with_another_power_scale_is_refused():
    with controller() as (device, engine, _):
        with pytest.raises(PufError, match=r"\$30"):
            GrblLaser.open(device.device_path, answer_timeout_s=2.0, s_max=255)
    assert engine.gcode_lines == 0


# ---- puf etch ------------------------------------------------------------------------


def film_segments(batch_dir) -> set[tuple[float, ...]]:
    return {tuple(np.round(s, 4)) for s in EtchedFilm.load(batch_dir / "sim" / "film.npz").segments}


def test_etch_sim_engraves_the_film_and_resume_after_a_fix_completes_it(tmp_path, capsys):
    lines = make_job()
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    write_batch(clean, lines, make_layout())
    assert puf(["etch", str(clean), "--sim", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["segments"] == len(film_segments(clean)) == len(clean_burns(lines))
    assert json.loads((clean / "laser" / "etch_state.json").read_text())["status"] == "done"

    bad = lines.copy()
    line = job_commands(lines)[end_of_a_pass(lines, 60)].line
    bad[line - 1] += " E5"
    write_batch(broken, bad, make_layout())
    capsys.readouterr()
    assert puf(["etch", str(broken), "--sim"]) == 2  # the check pass finds it
    assert f"line {line}" in capsys.readouterr().err
    assert not (broken / "sim" / "film.npz").exists()
    assert puf(["etch", str(broken), "--sim", "--no-check"]) == 2  # found mid-job
    assert f"line {line}" in capsys.readouterr().err
    state = json.loads((broken / "laser" / "etch_state.json").read_text())
    assert state["status"] == "stopped" and state["resume_line"] <= line
    assert puf(["etch", str(broken), "--sim"]) == 2  # an unfinished etch is not restarted silently
    assert "--resume" in capsys.readouterr().err
    (broken / "laser" / "job.gcode").write_text("\n".join(lines) + "\n")
    assert puf(["etch", str(broken), "--sim", "--resume"]) == 0
    assert film_segments(broken) == film_segments(clean)
    seeds = {EtchedFilm.load(d / "sim" / "film.npz").seed for d in (clean, broken)}
    assert seeds == {zlib.crc32(b"T1")}


def test_etch_on_a_serial_port_keeps_a_state_to_resume_from(tmp_path, capsys):
    lines = make_job()
    write_batch(tmp_path / "B", lines, make_layout())
    checked = len(job_commands(lines))  # the check pass comes first
    with controller(fail_at_line=checked + end_of_a_pass(lines, 30) + 1) as (device, engine, burns):
        assert puf(["etch", str(tmp_path / "B"), "--port", device.device_path]) == 2
        err = capsys.readouterr().err
        assert "error:20" in err and f"--port {device.device_path} --resume" in err
        assert engine.spindle == "M5"
        assert puf(["etch", str(tmp_path / "B"), "--port", device.device_path, "--resume"]) == 0
    assert as_set(burns) == as_set(clean_burns(lines))
    state = json.loads((tmp_path / "B" / "laser" / "etch_state.json").read_text())
    assert state["status"] == "done"


def test_a_batch_etched_to_its_end_is_not_etched_again_without_force(tmp_path, capsys):
    write_batch(tmp_path / "B", make_job(), make_layout())
    assert puf(["etch", str(tmp_path / "B"), "--sim", "--no-check"]) == 0
    state_path, film_path = tmp_path / "B" / "laser" / "etch_state.json", tmp_path / "B" / "sim" / "film.npz"
    state, film = json.loads(state_path.read_text()), film_path.read_bytes()
    capsys.readouterr()
    for again in (["--sim"], ["--sim", "--from-line", "1"], ["--sim", "--film-seed", "5"]):
        assert puf(["etch", str(tmp_path / "B"), *again]) == 2
        err = capsys.readouterr().err
        assert f"batch T1 was etched to its end on {state['updated']} (--sim)" in err and "--force" in err
        assert film_path.read_bytes() == film and json.loads(state_path.read_text()) == state
    assert puf(["etch", str(tmp_path / "B"), "--sim", "--resume"]) == 0  # says there is nothing to resume
    assert "nothing to resume" in capsys.readouterr().out and film_path.read_bytes() == film
    assert puf(["etch", str(tmp_path / "B"), "--sim", "--no-check", "--force", "--film-seed", "5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["start_line"] == 1 and summary["lines_sent"] == len(job_commands(make_job()))
    assert json.loads(state_path.read_text())["run"] != state["run"]
    assert EtchedFilm.load(film_path).seed == 5 and len(film_segments(tmp_path / "B")) == summary["segments"]


def test_etch_without_a_designed_batch_says_what_to_run(tmp_path, capsys):
    assert puf(["etch", str(tmp_path / "nothing"), "--sim"]) == 2
    assert "run 'puf design" in capsys.readouterr().err


def test_etch_sim_makes_a_film_of_the_style_asked_and_keeps_it(tmp_path, capsys):
    from fabrication.sim.film import FilmStyle

    write_batch(tmp_path / "B", make_job(), make_layout())
    assert puf(["etch", str(tmp_path / "B"), "--sim", "--no-check", "--film-style", "coarse,faceted=yes",
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["film_style"]["grain_um"] == 9.0
    film = EtchedFilm.load(tmp_path / "B" / "sim" / "film.npz")
    assert film.style == FilmStyle(grain_um=9.0, contrast=0.5, faceted=True)
    # going on etches the same film: another style is refused, none keeps the saved one
    again = ["--sim", "--no-check", "--from-line", "2", "--force"]
    assert puf(["etch", str(tmp_path / "B"), *again, "--film-style", "fine"]) == 2
    assert "going on etches the same film" in capsys.readouterr().err
    assert puf(["etch", str(tmp_path / "B"), *again]) == 0
    assert EtchedFilm.load(tmp_path / "B" / "sim" / "film.npz").style == film.style
    for argv, message in [(["--sim", "--film-style", "grain_um=0"], "grain_um must be between 1 and 20"),
                          (["--sim", "--film-style", "velvet"], "unknown film style 'velvet'"),
                          (["--port", "/dev/null", "--film-style", "fine"], "use it with --sim")]:
        capsys.readouterr()
        assert puf(["etch", str(tmp_path / "B"), "--from-line", "1", "--force", *argv]) == 2
        assert message in capsys.readouterr().err


def test_the_feed_chosen_at_design_reaches_the_controller(tmp_path, capsys):
    batch = tmp_path / "F1"
    assert puf(["design", str(batch), "--fields", "1x1", "--labels", "2x1", "--feed-mm-min", "1500"]) == 0
    assert json.loads((batch / "laser" / "job.json").read_text())["feed_mm_min"] == 1500
    lines = (batch / "laser" / "job.gcode").read_text().splitlines()
    assert "F1500" in lines and "F600" not in lines
    engine = GrblEngine()
    GrblLaser(LoopbackPort(engine)).run_job(lines)
    assert " F1500 " in engine.parser_state()


def test_the_grbl_frame_traces_the_outline_with_the_beam_off(tmp_path, capsys):
    lines = make_job()
    moves: list[tuple] = []
    burns: list[tuple] = []
    engine = GrblEngine(lambda *burn: burns.append(burn), on_move=lambda *move: moves.append(move))
    laser = GrblLaser(LoopbackPort(engine))
    laser.frame(lines, passes=2)
    x0, y0, x1, y1 = job_outline(lines)
    assert burns == [] and all(move[4] is None for move in moves)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    path = [corners[0], *(corners[1:] + corners[:1]) * 2]
    assert np.allclose([move[2:4] for move in moves], path, atol=1e-4)
    assert " F600 " in engine.parser_state() and " M5 " in engine.parser_state()
    burned = clean_burns(lines)  # the outline holds every burn and touches each side
    xs, ys = [b[0] for b in burned] + [b[2] for b in burned], [b[1] for b in burned] + [b[3] for b in burned]
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx((x0, y0, x1, y1))

    write_batch(tmp_path, lines, make_layout())
    assert puf(["etch", str(tmp_path), "--sim", "--frame", "--frame-seconds", "0"]) == 0
    assert "1 time(s) with the beam off (M5)" in capsys.readouterr().out
    assert not (tmp_path / "sim" / "film.npz").exists()
    assert not (tmp_path / "laser" / "etch_state.json").exists()


def test_the_frame_loops_until_ctrl_c_and_speaks_json(tmp_path, capsys):
    """As LightBurn's and EzCAD's frame: the outline again and again until the operator stops it."""
    write_batch(tmp_path, make_job(), make_layout())
    framing = subprocess.Popen(puf_command("etch", str(tmp_path), "--sim", "--frame", "--json"), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "Ctrl-C stops" in framing.stderr.readline()
        framing.send_signal(signal.SIGINT)
        out, _ = framing.communicate(timeout=60)
    finally:
        framing.kill()
    assert framing.returncode == 0
    summary = json.loads(out)
    assert summary["stopped_by"] == "Ctrl-C" and summary["marked"] is False
    assert not (tmp_path / "sim" / "film.npz").exists()
    assert not (tmp_path / "laser" / "etch_state.json").exists()
    assert puf(["etch", str(tmp_path), "--sim", "--frame", "--frame-seconds", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passes"] == 1
    for bad in (["--frame-seconds", "1"], ["--frame", "--frame-seconds", "-1"], ["--frame", "--frame-seconds", "nan"]):
        assert puf(["etch", str(tmp_path), "--sim", *bad]) == 2
        assert "--frame-seconds is how long --frame traces the outline" in capsys.readouterr().err
