"""`puf etch`: run a designed batch's laser job on a GRBL or galvo laser, or the simulated film.

The command line becomes a `fabrication.etch.EtchOptions` (with its
`fabrication.galvo_options.GalvoOptions`); `etch_batch` does the work, imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import non_negative_int, point_mm, positive_int
from edge_app.verbs import Verb

# The galvo board's timing options, each a `fabrication.galvo.GalvoSettings` field of this name + "_us".
_DELAYS = ("laser-on", "laser-off", "polygon", "jump")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("batch_dir", type=Path, help="a batch designed with 'puf design'")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--sim", action="store_true",
                        help="etch the simulated film through the simulated controller of --laser")
    target.add_argument("--port", metavar="DEV",
                        help="serial port of a GRBL 1.1 controller in laser mode ($32=1)")
    target.add_argument("--board", type=non_negative_int, metavar="N",
                        help="--laser galvo: the Nth BJJCZ (EzCAD2) board on USB, 0 the first")
    target.add_argument("--board-socket", metavar="ADDRESS",
                        help="--laser galvo: a board whose USB transfers are served on a socket "
                             "(a Unix socket's path or HOST:PORT; see fabrication.usb_socket)")
    parser.add_argument("--laser", choices=("grbl", "galvo"), default="grbl",
                        help="a GRBL gantry laser (default) or a galvo laser on a BJJCZ board")
    parser.add_argument("--frame", action="store_true",
                        help="only trace the job's outline, again and again until Ctrl-C: a galvo with its "
                             "guide light, GRBL with the beam off (M5) at the job's feed")
    parser.add_argument("--frame-seconds", type=float, metavar="S",
                        help="--frame: stop tracing after S seconds (0: once)")
    add_galvo_arguments(parser)
    parser.add_argument("--baud", type=positive_int, default=115200, help="serial speed (default 115200)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="go on from where the last etch of this batch stopped")
    start.add_argument("--from-line", type=positive_int, metavar="N",
                       help="start at line N of laser/job.gcode (1-based)")
    parser.add_argument("--force", action="store_true",
                        help="etch a batch that was already etched to its end again (marks its labels a second time)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the dry run in GRBL's check mode ($C) that finds lines the "
                             "controller rejects before anything is etched")
    parser.add_argument("--unlock", action="store_true",
                        help="clear a GRBL alarm ($X) before starting, after checking the machine")
    parser.add_argument("--film-seed", type=non_negative_int,
                        help="--sim: texture seed of a new film (default: from the batch id)")
    parser.add_argument("--film-style", metavar="STYLE",
                        help="--sim: how a new film looks: a preset (default, coarse, fine, faceted, "
                             "mottled), NAME=VALUE settings (grain_um, contrast, faceted, mottling), or "
                             "both, e.g. 'coarse,faceted=yes' (default: the library's default film)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_galvo_arguments(parser: argparse.ArgumentParser) -> None:
    """The machine's galvo options: the lens, the power table, the source and the delays."""
    group = parser.add_argument_group("galvo board (--laser galvo)")
    group.add_argument("--lens-field-mm", type=float, default=110.0,
                       help="side of the lens's marking field (default 110)")
    group.add_argument("--lens-bits", type=int, default=0xFFFF,
                       help="galvo bits across that field (default 65535)")
    group.add_argument("--lens-centre-mm", type=point_mm, metavar="X,Y",
                       help="the job point (mm, as in job.gcode) placed at the field's centre "
                            "(default: the middle of the job)")
    group.add_argument("--lens-swap-xy", action="store_true", help="the head's X and Y mirrors are swapped")
    group.add_argument("--lens-mirror-x", action="store_true", help="the head's X axis runs the other way")
    group.add_argument("--lens-mirror-y", action="store_true", help="the head's Y axis runs the other way")
    group.add_argument("--galvo-power-calibration", type=Path, metavar="JSON",
                       help='measured (percent, mW) points: {"s_max": 100, "points": [[0, 0], ...]} '
                            "(default: the library's 1 W source)")
    group.add_argument("--frequency-khz", type=float, help="pulse frequency (default: the library's)")
    group.add_argument("--pulse-width-ns", type=int,
                       help="pulse width of a MOPA source (default: the library's)")
    for name in _DELAYS:
        group.add_argument(f"--{name}-delay-us", type=float, metavar="US",
                           help=f"{name.replace('-', ' ')} delay in µs (default: the library's)")


def run(args: argparse.Namespace) -> int:
    from fabrication.etch import EtchOptions, etch_batch
    from fabrication.galvo_options import GalvoOptions

    chosen_names = ("frequency_khz", "pulse_width_ns", *(f"{name.replace('-', '_')}_delay_us" for name in _DELAYS))
    galvo = GalvoOptions(
        chosen={name: getattr(args, name) for name in chosen_names if getattr(args, name) is not None},
        power_calibration=args.galvo_power_calibration, lens_field_mm=args.lens_field_mm,
        lens_bits=args.lens_bits, lens_centre_mm=args.lens_centre_mm, lens_swap_xy=args.lens_swap_xy,
        lens_mirror_x=args.lens_mirror_x, lens_mirror_y=args.lens_mirror_y)
    etch_batch(args.batch_dir, EtchOptions(
        sim=args.sim, port=args.port, board=args.board, board_socket=args.board_socket, laser=args.laser,
        frame=args.frame, frame_seconds=args.frame_seconds, galvo=galvo, baud=args.baud, resume=args.resume,
        from_line=args.from_line,
        force=args.force, check=not args.no_check, unlock=args.unlock, film_seed=args.film_seed,
        film_style=args.film_style, as_json=args.json))
    return 0


verb = Verb(
    "etch",
    "Etch a designed batch on a GRBL laser or a BJJCZ galvo laser (or the simulated film).",
    "  puf etch out/B0001 --sim                    # engrave the simulated film\n"
    "  puf etch out/B0001 --sim --film-style coarse   # a film of 9 um grains, half the contrast\n"
    "  puf etch out/B0001 --port /dev/ttyUSB0      # a GRBL controller in laser mode\n"
    "  puf etch out/B0001 --port /dev/ttyUSB0 --resume   # go on after an error or ALARM\n"
    "  puf etch out/B0001 --laser galvo --board 0 --frame   # trace the outline with the guide light until Ctrl-C\n"
    "  puf etch out/B0001 --laser galvo --board 0 --lens-field-mm 70   # mark on a galvo board",
    add_arguments,
    run,
    extras=("factory",),
    rank=12,
)
