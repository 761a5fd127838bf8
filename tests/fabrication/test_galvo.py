"""The galvo driver against the simulated BJJCZ LMC board (pyusb's Device API, the board's
packets); and `puf etch --laser galvo` end to end, compared with the GRBL path's film."""

import json

import numpy as np
import pytest

import fabrication.sim.galvo_board as boards
from edge_app.cli import main as puf
from edge_app.errors import PufError
from fabrication.galvo import GalvoLaser, GalvoSettings, LensField
from fabrication.laser import LaserJobStopped
from fabrication.laser_power import PowerCalibration
from fabrication.sim.film import EtchedFilm
from fabrication.sim.galvo_board import SimulatedLmcBoard
from tests.batch_support import LABELS, connect, make_job, make_layout, marked_labels, write_batch


def same_film(a: np.ndarray, b: np.ndarray, tolerance_um: float = 2.0) -> bool:
    """Same segments (in any order) within `tolerance_um` and 1 mW."""
    if a.shape != b.shape:
        return False
    a, b = a[np.lexsort(np.round(a[:, :4]).T)], b[np.lexsort(np.round(b[:, :4]).T)]
    return bool(np.all(np.abs(a[:, :4] - b[:, :4]) <= tolerance_um) and np.all(np.abs(a[:, 4] - b[:, 4]) <= 1.0))


def test_a_whole_job_is_marked_label_by_label_with_the_beam_off_at_the_end():
    lines = make_job(LABELS)
    board = SimulatedLmcBoard()
    laser, film = connect(board, lines)
    done: list[int] = []
    laser.run_job(lines, on_done=done.append)
    units = laser.plan(lines).units
    assert done == [u.line for u in units] and len(units) == LABELS
    assert all(count > 0 for count in marked_labels(film, make_layout(LABELS)))
    assert not board.beam_enabled and laser.resume_line == len(lines) + 1


def test_an_error_mid_job_stops_with_the_laser_off_names_the_label_and_resume_marks_none_twice():
    lines = make_job(LABELS)
    clean_board = SimulatedLmcBoard()
    clean_laser, clean = connect(clean_board, lines)
    clean_laser.run_job(lines)
    per_label = marked_labels(clean, make_layout(LABELS))

    board = SimulatedLmcBoard(halt_at_list=2)
    laser, film = connect(board, lines)
    units = laser.plan(lines).units
    with pytest.raises(LaserJobStopped) as stopped:
        laser.run_job(lines)
    stop = stopped.value
    assert units[1].label in str(stop) and "partly marked" in str(stop)
    assert "Laser off" in stop.laser_state and not board.beam_enabled and not board.busy
    assert stop.partly_done == units[1].line and stop.resume_line == units[2].line

    laser.run_job(lines, stop.resume_line)
    counts = marked_labels(film, make_layout(LABELS))
    assert counts[0] == per_label[0] and counts[2:] == per_label[2:]  # each once
    assert 0 < counts[1] < per_label[1]  # the cut-off label: partly, never again


def test_an_error_before_a_list_runs_lets_the_resume_mark_that_label_whole():
    lines = make_job(LABELS)
    board = SimulatedLmcBoard(stall_at_list=3, fault_fraction=0.0)
    laser, film = connect(board, lines)
    units = laser.plan(lines).units
    with pytest.raises(LaserJobStopped) as stopped:
        laser.run_job(lines)
    assert "stalled" in str(stopped.value) and units[2].label in str(stopped.value)
    assert not board.beam_enabled and not board.busy
    assert stopped.value.resume_line == units[3].line  # begun (ExecuteList sent): skipped


def test_a_dropped_connection_is_a_clear_error_and_the_laser_state_unknown():
    lines = make_job(LABELS)
    board = SimulatedLmcBoard(drop_at_list=2)
    laser, _ = connect(board, lines)
    with pytest.raises(LaserJobStopped) as stopped:
        laser.run_job(lines)
    message = str(stopped.value)
    assert "USB connection dropped" in message and laser.plan(lines).units[1].label in message
    assert "switch the laser off at the machine" in stopped.value.laser_state


def test_a_board_that_is_not_there_is_refused_when_connecting():
    board = SimulatedLmcBoard()
    board.dropped = True
    with pytest.raises(PufError, match="USB connection dropped"):
        GalvoLaser(board, GalvoSettings(), LensField(), PowerCalibration().mw_for_s)


def test_targets_outside_the_lens_field_are_refused_naming_the_line_never_skipped():
    lines = make_job(LABELS)
    laser, _ = connect(SimulatedLmcBoard(), lines)
    small = GalvoLaser(SimulatedLmcBoard(), GalvoSettings(), LensField(field_mm=0.5), PowerCalibration().mw_for_s)
    with pytest.raises(PufError, match=r"line \d+ .*outside the 0.5 mm lens field"):
        small.check_job(lines)
    bad = [*lines[:12], "G1 X1 Y1 Z3", *lines[12:]]
    with pytest.raises(PufError, match="line 13 .*Z means nothing to a galvo"):
        laser.check_job(bad)
    with pytest.raises(PufError, match="G91"):
        laser.check_job([*lines[:3], "G91", *lines[3:]])


def test_the_lens_maps_swap_and_mirror_both_ways():
    lens = LensField(field_mm=100.0, centre_mm=(10.0, -5.0), swap_xy=True, mirror_y=True)
    bits = lens.to_bits(12.0, -4.0)
    assert bits == (0x8000 + round(1.0 * 655.35), 0x8000 - round(2.0 * 655.35))
    assert np.allclose(lens.to_mm(*bits), (12.0, -4.0), atol=0.002)
    assert LensField(correction=lambda u, v: (u + 1.0, v)).to_bits(0.0, 0.0)[0] == 0x8000 + round(65535 / 110)


def test_the_expected_time_counts_speeds_and_delays():
    lines = make_job(1)
    fast = connect(SimulatedLmcBoard(), lines)[0].plan(lines).seconds()
    slow_laser = GalvoLaser(SimulatedLmcBoard(), GalvoSettings(mark_speed_mm_s=500.0, polygon_delay_us=300.0),
                            LensField(), PowerCalibration().mw_for_s)
    slow = slow_laser.plan(lines).seconds()
    assert 0 < fast < slow


def test_puf_etch_galvo_sim_marks_the_film_the_grbl_path_marks(tmp_path, capsys):
    lines = make_job(LABELS)
    grbl, galvo = tmp_path / "grbl", tmp_path / "galvo"
    for batch in (grbl, galvo):
        write_batch(batch, lines, make_layout(LABELS))
    assert puf(["etch", str(grbl), "--sim", "--json"]) == 0
    capsys.readouterr()
    assert puf(["etch", str(galvo), "--sim", "--laser", "galvo", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["expected_marking_s"] > 0
    films = [EtchedFilm.load(b / "sim" / "film.npz").segments for b in (grbl, galvo)]
    assert same_film(*films)


def test_puf_etch_galvo_resumes_after_an_error_with_no_label_marked_twice(tmp_path, capsys, monkeypatch):
    lines = make_job(LABELS)
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    for batch in (clean, broken):
        write_batch(batch, lines, make_layout(LABELS))
    assert puf(["etch", str(clean), "--sim", "--laser", "galvo"]) == 0
    # the simulated board of the next run reports an error while it marks the third label
    monkeypatch.setattr(boards, "SimulatedLmcBoard", lambda: SimulatedLmcBoard(halt_at_list=3))
    capsys.readouterr()
    assert puf(["etch", str(broken), "--sim", "--laser", "galvo"]) == 2
    err = capsys.readouterr().err
    label = _labels(lines)[2]
    assert f"label {label}" in err and "Laser off" in err and "--laser galvo --resume" in err
    monkeypatch.undo()
    assert puf(["etch", str(broken), "--sim", "--laser", "galvo", "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [u["label"] for u in summary["uncertain"]] == [label]
    layout = make_layout(LABELS)
    whole = marked_labels(EtchedFilm.load(clean / "sim" / "film.npz"), layout)
    resumed = marked_labels(EtchedFilm.load(broken / "sim" / "film.npz"), layout)
    assert resumed[:2] == whole[:2] and resumed[3:] == whole[3:] and 0 < resumed[2] < whole[2]


def test_puf_etch_galvo_frame_traces_the_outline_with_the_guide_light_only(tmp_path, capsys):
    lines = make_job(LABELS)
    write_batch(tmp_path, lines, make_layout(LABELS))
    assert puf(["etch", str(tmp_path), "--sim", "--laser", "galvo", "--frame", "--frame-seconds", "0"]) == 0
    assert "1 time(s) with the guide light" in capsys.readouterr().out
    assert not (tmp_path / "sim" / "film.npz").exists()
    assert not (tmp_path / "laser" / "etch_state.json").exists()
    # the summary of a marking speaks of labels and job lines, not of G-code streamed to a controller
    assert puf(["etch", str(tmp_path), "--sim", "--laser", "galvo"]) == 0
    out = capsys.readouterr().out
    assert f"marked batch T1: {LABELS} labels (job lines 1-{len(lines)})" in out and "G-code" not in out


def test_the_frame_run_jumps_around_the_job_with_the_light_and_never_opens_the_source():
    lines = make_job(LABELS)
    board = SimulatedLmcBoard()
    laser, film = connect(board, lines)
    opened: list[bool] = []
    board.on_mark = lambda *mark: opened.append(True)
    laser.frame(lines, passes=2)
    x0, y0, x1, y1 = laser.plan(lines).outline_bits()
    assert board.light_path == [(x0, y0), (x1, y0), (x1, y1), (x0, y1)] * 2 + [(x0, y0)]
    assert not opened and not board.source_open and board.port == 0
    assert x1 - x0 > 0.9 * LABELS * 0.25 * LensField().bits_per_mm  # the whole row of labels


def test_galvo_options_are_checked(tmp_path, capsys):
    write_batch(tmp_path, make_job(1), make_layout(1))
    assert puf(["etch", str(tmp_path), "--sim", "--laser", "galvo", "--frequency-khz", "0"]) == 2
    assert "frequency khz must be above 0" in capsys.readouterr().err
    assert puf(["etch", str(tmp_path), "--port", "/dev/null", "--laser", "galvo"]) == 2
    assert "--port is a GRBL controller's" in capsys.readouterr().err


def _labels(lines: list[str]) -> list[str]:
    return [line.split()[2] for line in lines if line.startswith("; label ")]


def test_after_a_dead_host_the_mirrors_tell_whether_a_begun_label_ran():
    lines = make_job(LABELS)
    board = SimulatedLmcBoard()
    laser, _ = connect(board, lines)
    units = laser.plan(lines).units

    def die_before_the_third(line: int) -> None:
        if line == units[2].line:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):  # the host ran two labels, then died
        laser.run_job(lines, on_send=die_before_the_third)
    again = GalvoLaser(board, GalvoSettings(), LensField(), PowerCalibration().mw_for_s)
    assert again.ran(lines, units[1].line) is True  # its list ran to its end
    assert again.ran(lines, units[2].line) is False  # its list never ran
    assert again.ran(lines, units[0].line) is None  # the mirrors are not where it ends

    cut = SimulatedLmcBoard(halt_at_list=2)
    laser, _ = connect(cut, lines)
    with pytest.raises(LaserJobStopped):
        laser.run_job(lines)
    assert laser.ran(lines, units[1].line) is None  # cut off halfway: neither end


def test_a_resume_with_other_galvo_options_or_another_laser_is_refused(tmp_path, capsys, monkeypatch):
    write_batch(tmp_path, make_job(LABELS), make_layout(LABELS))
    etch = ["etch", str(tmp_path), "--sim", "--laser", "galvo"]
    monkeypatch.setattr(boards, "SimulatedLmcBoard", lambda: SimulatedLmcBoard(halt_at_list=2))
    assert puf(etch) == 2
    monkeypatch.undo()
    state = json.loads((tmp_path / "laser" / "etch_state.json").read_text())
    assert state["galvo"]["laser_on_delay_us"] == 100.0 and state["galvo"]["lens"]["field_mm"] == 110.0
    capsys.readouterr()
    for options, named in ((["--laser-on-delay-us", "50"], "laser_on_delay_us 100.0 -> 50.0"),
                           (["--lens-mirror-x"], "lens mirror_x False -> True"),
                           (["--lens-centre-mm", "0,0"], "lens centre_mm")):
        assert puf([*etch, "--resume", *options]) == 2
        assert named in capsys.readouterr().err
    assert puf(["etch", str(tmp_path), "--sim", "--resume"]) == 2
    assert "ran on a galvo laser" in capsys.readouterr().err
    assert puf([*etch, "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
