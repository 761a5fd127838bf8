"""The galvo board's command-line options (`puf etch --laser galvo`), read into settings.

The marking and jump speeds are the batch's (``puf design --mark-speed-mm-s``, kept in
laser/job.json); the lens, the delays and the source are the machine's, given here.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y in mm, e.g. 10,-4") from None
    return x, y


def add_galvo_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("galvo board (--laser galvo)")
    group.add_argument("--lens-field-mm", type=float, default=110.0,
                       help="side of the lens's marking field (default 110)")
    group.add_argument("--lens-bits", type=int, default=0xFFFF,
                       help="galvo bits across that field (default 65535)")
    group.add_argument("--lens-centre-mm", type=_point, metavar="X,Y",
                       help="the job point (mm, as in job.gcode) placed at the field's centre "
                            "(default: the middle of the job)")
    group.add_argument("--lens-swap-xy", action="store_true", help="the head's X and Y mirrors are swapped")
    group.add_argument("--lens-mirror-x", action="store_true", help="the head's X axis runs the other way")
    group.add_argument("--lens-mirror-y", action="store_true", help="the head's Y axis runs the other way")
    group.add_argument("--galvo-power-calibration", type=Path, metavar="JSON",
                       help='measured (percent, mW) points: {"s_max": 100, "points": [[0, 0], ...]} '
                            "(default: the library's 1 W source)")
    group.add_argument("--frequency-khz", type=float, help="pulse frequency (default: the library's)")
    group.add_argument("--pulse-width-ns", type=int, help="pulse width of a MOPA source (default: the library's)")
    for name in ("laser-on", "laser-off", "polygon", "jump"):
        group.add_argument(f"--{name}-delay-us", type=float, metavar="US",
                           help=f"{name.replace('-', ' ')} delay in µs (default: the library's)")


def galvo_settings(args: argparse.Namespace, job: dict):
    """(`GalvoSettings`, `LensField`) from the options and the batch's job settings."""
    from dataclasses import fields

    from fabrication.galvo import GalvoSettings, LensField
    from fabrication.laser_power import PowerCalibration

    chosen = {f.name: getattr(args, f.name) for f in fields(GalvoSettings) if getattr(args, f.name, None) is not None}
    if args.galvo_power_calibration is not None:
        chosen["power"] = PowerCalibration.load(args.galvo_power_calibration)
    chosen.update(job.get("galvo", {}))
    lens = LensField(args.lens_field_mm, args.lens_bits, args.lens_centre_mm,
                     args.lens_swap_xy, args.lens_mirror_x, args.lens_mirror_y)
    return GalvoSettings(**chosen), lens


def galvo_record(settings, lens) -> dict:
    """The galvo options a run marks with (speeds, delays, source, power table, the lens with
    its centre resolved), as JSON data for the etch state: a resume must mark like the start."""
    import json
    from dataclasses import asdict, fields

    lens_options = {f.name: getattr(lens, f.name) for f in fields(lens) if f.compare}
    return json.loads(json.dumps({**asdict(settings), "lens": lens_options}))


def check_same_galvo(batch_id: str, before: dict | None, now: dict | None) -> None:
    """Refuse a resume whose laser or galvo options differ from those of the run it goes on."""
    from edge_app.errors import PufError

    if before == now:
        return
    if before is None or now is None:
        was = "a GRBL laser" if before is None else "a galvo laser"
        raise PufError(f"the last etch of batch {batch_id} ran on {was}: go on with the same --laser, "
                       "or start again with --from-line 1")
    changed = [f"{name} {before.get(name)} -> {now.get(name)}" for name in sorted({*before, *now} - {"lens"})
               if before.get(name) != now.get(name)]
    changed += [f"lens {name} {before['lens'].get(name)} -> {now['lens'].get(name)}"
                for name in sorted({*before.get("lens", {}), *now["lens"]})
                if before.get("lens", {}).get(name) != now["lens"].get(name)]
    raise PufError(f"the last etch of batch {batch_id} marked with other galvo options ({'; '.join(changed)}): "
                   "its labels would not match; go on with the same options, or start again with --from-line 1")
