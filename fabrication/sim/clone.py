"""The clone attack: a genuine label photographed, printed, re-photographed.

A counterfeiter who holds a genuine label takes the best photo of it they can (square on,
sharp, well exposed), evens it out, and prints it at the label's true size with the finest
printer they can get, in a green fluorescent ink on paper. The print is what an inspector's
handheld camera then photographs. What the copy loses on the way:

* the copy camera's own resolution and blur;
* the printer: ink lands only on its dot grid, and continuous tone becomes a clustered-dot
  halftone screen, so tone is resolved only over a screen cell (several dots); dots grow as
  the ink spreads (dot gain) and bleed into the paper (`PrintModel(screen_dots=0)` is a
  continuous-tone print instead: with a fine enough dot it is an optical copy of the film,
  which a fingerprint cannot tell from the label: the defence is that no printer gets there);
* fluorescence becomes ink: a dye's broad emission instead of the film's narrow 513 nm line
  (another colour through the camera's filters), over paper that glows faintly on its own
  (optical brighteners) and takes the ink up unevenly along its fibres.

The border and the glyph, lines 7-10 µm wide, survive the print, so the copy still looks
like a label to segmentation and reaches the fingerprint stage; the film's grain, about
3 µm, is below the screen's tone resolution and is replaced by the halftone's own dots.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.sim.field_camera import FieldCameraModel, Scene, capture_label
from fabrication.sim.film import FILM_PX_UM
from fabrication.sim.optics import EMISSION_BGR


@dataclass(frozen=True)
class PrintModel:
    """The counterfeiter's printer, ink and paper."""

    dot_um: float = 2.0  # addressable dot pitch: 12,700 dpi, an imagesetter (far beyond office printers)
    screen_dots: int = 4  # halftone cell side in dots (tone resolved over dot_um * screen_dots); 0: continuous tone
    dot_gain: float = 0.15  # dots print this much larger than nominal as the ink spreads
    ink_blur_um: float = 0.8  # ink bleeding into the paper
    paper_glow: float = 0.08  # the bare paper's own fluorescence, relative to full ink
    fibre_contrast: float = 0.15  # uneven ink take-up along the paper's fibres
    fibre_um: float = 12.0  # fibre texture scale
    ink_bgr: tuple[float, float, float] = (0.45, 1.0, 0.35)  # a fluorescent ink's broad emission

    def __post_init__(self) -> None:
        if self.dot_um < FILM_PX_UM:
            raise PufError(f"a printer dot of {self.dot_um} um is finer than the simulated film's grid "
                           f"({FILM_PX_UM} um)")
        if self.screen_dots < 0 or self.ink_blur_um < 0 or self.dot_gain < 0 or self.fibre_um <= 0:
            raise PufError(f"impossible printer: {self}")

    @property
    def tint_bgr(self) -> tuple[float, float, float]:
        """The ink's colour relative to the film's emission (for `capture_label`)."""
        b, g, r = (float(v) for v in np.asarray(self.ink_bgr) / EMISSION_BGR)
        return b, g, r


# The counterfeiter's best photo of the genuine label: square on, sharp, fine JPEG.
COPY_CAMERA = FieldCameraModel(pixel_size_um=(0.5, 0.5), rotation_deg=(-2.0, 2.0), tilt_deg=0.5, offset_frac=0.02,
                               motion_blur_px=(0.0, 0.0), defocus_px=(0.4, 0.5), jpeg_quality=(95, 95),
                               white_balance=0.02, gain=(160.0, 170.0))
HANDHELD = FieldCameraModel()  # the inspector's camera


class PrintedLabel:
    """A print lying where the genuine label was, seen by a camera as it sees the film:
    `render` gives emission over film pixels (outside the print: bare paper)."""

    def __init__(self, emission: np.ndarray, origin: tuple[int, int], paper: float) -> None:
        self.emission = emission  # (H, W) float32 on the film grid
        self.origin = origin  # film px of emission[0, 0]
        self.paper = paper

    def render(self, i0: int, j0: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w), self.paper, np.float32)
        x0, y0 = i0 - self.origin[0], j0 - self.origin[1]
        src = self.emission[max(y0, 0):max(y0 + h, 0), max(x0, 0):max(x0 + w, 0)]
        out[max(-y0, 0):max(-y0, 0) + src.shape[0], max(-x0, 0):max(-x0, 0) + src.shape[1]] = src
        return out


def screen_thresholds(cells: int) -> np.ndarray:
    """A clustered-dot screen: thresholds rising from the cell's centre outwards, so a
    tone grows one round dot per cell (as offset and laser printers print)."""
    y, x = np.mgrid[:cells, :cells] + 0.5 - cells / 2
    order = np.argsort(np.argsort((x * x + y * y).ravel() + 1e-3 * np.arange(cells * cells), kind="stable"))
    return ((order + 0.5) / (cells * cells)).reshape(cells, cells).astype(np.float32)


def print_photo(photo: np.ndarray, photo_to_design: np.ndarray, seed: int,
                printer: PrintModel = PrintModel()) -> PrintedLabel:
    """Print a photo at true size: `photo_to_design` (3x3) maps its pixels to design µm."""
    h, w = photo.shape[:2]
    footprint = cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32),
                                         photo_to_design)[0]
    dot = printer.dot_um
    x0, y0 = np.floor(footprint.min(0) / dot) * dot
    nx, ny = (np.ceil((footprint.max(0) - (x0, y0)) / dot)).astype(int)
    to_dots = np.array([[1 / dot, 0, -x0 / dot], [0, 1 / dot, -y0 / dot], [0, 0, 1]]) @ photo_to_design
    # the counterfeiter's levels: the photo's green channel stretched to full ink
    tone: np.ndarray = photo[:, :, 1].astype(np.float32) if photo.ndim == 3 else photo.astype(np.float32)
    tone /= max(float(np.percentile(tone, 99.5)), 1.0)
    px_um = float(np.sqrt(abs(np.linalg.det(photo_to_design[:2, :2]))))
    tone = cv2.GaussianBlur(tone, (0, 0), max(0.5 * dot / px_um, 0.3))  # no aliasing onto the dot grid
    tone = cv2.warpPerspective(tone, to_dots, (int(nx), int(ny)), flags=cv2.INTER_LINEAR, borderValue=0.0)
    cells = printer.screen_dots
    if cells:
        screen = np.tile(screen_thresholds(cells), (-(-int(ny) // cells), -(-int(nx) // cells)))[:ny, :nx]
        dots = (np.clip(tone, 0.0, 1.0) > screen).astype(np.float32)
    else:  # a photographic or dye-sublimation print: every dot takes any tone
        dots = np.clip(tone, 0.0, 1.0)
    # onto the film grid: each dot a square of ink, spread and bled into the paper
    size = (int(round(nx * dot / FILM_PX_UM)), int(round(ny * dot / FILM_PX_UM)))
    ink = cv2.resize(dots, size, interpolation=cv2.INTER_NEAREST)
    ink = cv2.GaussianBlur(ink, (0, 0), max(printer.ink_blur_um / FILM_PX_UM, 0.3))
    ink = np.clip(ink * (1.0 + 2.0 * printer.dot_gain), 0.0, 1.0)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0xC10E])
    step = max(int(round(printer.fibre_um / FILM_PX_UM)), 1)
    coarse = rng.standard_normal((ink.shape[0] // step + 2, ink.shape[1] // step + 2)).astype(np.float32)
    fibres: np.ndarray = cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 1.0), (ink.shape[1], ink.shape[0]),
                        interpolation=cv2.INTER_CUBIC)
    fibres *= printer.fibre_contrast / max(float(fibres.std()), 1e-6)
    emission = printer.paper_glow + (1.0 - printer.paper_glow) * ink * (1.0 + fibres)
    origin = (int(round(x0 / FILM_PX_UM)), int(round(y0 / FILM_PX_UM)))
    return PrintedLabel(np.clip(emission, 0.0, None).astype(np.float32), origin, printer.paper_glow)


def clone_label(film: Scene, layout: BatchLayout, field: int, slot: int, seed: int,
                printer: PrintModel = PrintModel(), copy_camera: FieldCameraModel = COPY_CAMERA
                ) -> tuple[PrintedLabel, np.ndarray]:
    """The counterfeiter's print of one genuine label, and the photo it was printed from.

    The print is registered on the genuine label's own design position (the forger lines
    it up by the border's corners), only so the handheld camera model can photograph it."""
    photo, truth = capture_label(film, layout, field, slot, seed, copy_camera)
    cx, cy = layout.label_center_um(field, slot)
    half = layout.label_size_um / 2
    design = np.array([[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half],
                       [cx - half, cy + half]], np.float32)
    to_design = cv2.getPerspectiveTransform(np.array(truth["corners_px"], np.float32), design)
    return print_photo(photo, to_design, seed, printer), photo


def photograph_clone(printed: PrintedLabel, layout: BatchLayout, field: int, slot: int, seed: int,
                     printer: PrintModel = PrintModel(), camera: FieldCameraModel = HANDHELD,
                     window: bool = False) -> tuple[np.ndarray, dict]:
    """The inspector's handheld photo of the print (as `capture_label` photographs a label;
    `window`: only the label's window of it)."""
    return capture_label(printed, layout, field, slot, seed, camera, tint_bgr=printer.tint_bgr, window=window)
