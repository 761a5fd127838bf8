"""The galvo board's options for a run (`puf etch --laser galvo`, whose verb module reads them
from the command line), made into settings, recorded in the etch state and compared on a resume.

The marking and jump speeds are the batch's (``puf design --mark-speed-mm-s``, kept in
laser/job.json); the lens, the delays and the source are the machine's, given here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabrication.galvo import GalvoSettings, LensField

from edge_app.errors import PufError
from fabrication.galvo import GalvoSettings, LensField
from fabrication.laser_power import PowerCalibration


@dataclass(frozen=True)
class GalvoOptions:
    """The galvo options given for a run (`puf etch --laser galvo`): the `GalvoSettings` fields
    chosen (delays, pulse frequency and width; the rest are the batch's or the library's), a
    measured power table, and how the lens maps the job (`LensField`'s fields)."""

    chosen: dict[str, float]
    power_calibration: Path | None
    lens_field_mm: float
    lens_bits: int
    lens_centre_mm: tuple[float, float] | None
    lens_swap_xy: bool
    lens_mirror_x: bool
    lens_mirror_y: bool


def galvo_settings(options: GalvoOptions, job: dict) -> tuple[GalvoSettings, LensField]:
    """(`GalvoSettings`, `LensField`) from the options and the batch's job settings."""
    chosen: dict = dict(options.chosen)
    if options.power_calibration is not None:
        chosen["power"] = PowerCalibration.load(options.power_calibration)
    chosen.update(job.get("galvo", {}))
    lens = LensField(options.lens_field_mm, options.lens_bits, options.lens_centre_mm,
                     options.lens_swap_xy, options.lens_mirror_x, options.lens_mirror_y)
    return GalvoSettings(**chosen), lens


def galvo_record(settings, lens) -> dict:
    """The galvo options a run marks with (speeds, delays, source, power table, the lens with
    its centre resolved), as JSON data for the etch state: a resume must mark like the start."""
    lens_options = {f.name: getattr(lens, f.name) for f in fields(lens) if f.compare}
    return json.loads(json.dumps({**asdict(settings), "lens": lens_options}))


def check_same_galvo(batch_id: str, before: dict | None, now: dict | None) -> None:
    """Refuse a resume whose laser or galvo options differ from those of the run it goes on."""
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
