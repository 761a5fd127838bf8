"""A label crop as segmentation cuts it: its side, and the quality figures measured with it.

Plain data with no image library, so that what records or configures crops (the registry's
columns, `puf segment`'s options, the trainer's simulated data, the device's warm-up) takes
the one definition from here without loading OpenCV.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

CROP_SIZE = 128  # a crop's side in px, deskewed: what the model's preprocessing starts from


@dataclass(frozen=True, slots=True)
class Quality:
    """How good a crop is, for choosing, re-shooting or weighting labels."""

    # focus, from the border's outer edge (texture and magnification do not enter): the
    # border's width over the edge's rise distance (step height over steepest slope), on the side where the edge is
    # widest (a hand's movement smears one direction). Higher is sharper; 0 when the edge
    # cannot be measured
    sharpness: float
    exposure: float  # median level of the film inside the label, 0-255
    clipped: float  # fraction of crop pixels at 255 (saturated)
    border_contrast: float  # 1 - border level / film level
    skew_deg: float  # largest deviation of a corner angle from 90 degrees
    aspect: float  # longest side over shortest side
    size_ratio: float  # mean side over the expected side
    edge_rms_px: float | None = None  # border points' distance from the fitted sides (fast)

    def to_dict(self) -> dict:
        return {k: (None if v is None else round(float(v), 4)) for k, v in asdict(self).items()}

    def rounded(self) -> Quality:
        """The figures as reports and the registry keep them (4 decimals)."""
        return Quality(**self.to_dict())


QUALITY_FIELDS = tuple(f.name for f in fields(Quality))
