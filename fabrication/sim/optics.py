"""Image formation shared by the simulated cameras: from a fluorescence map to 8-bit BGR.

Both the factory microscope and the handheld field camera see the same physics: the
film's emission through a lens (defocus), uneven excitation and vignetting, the colour of
CsPbBr3 emission (green, PL peak near 513 nm) through the sensor's colour filters, shot
and read noise, and 8-bit quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# How a 513 nm emitter lands in a Bayer sensor's B, G and R channels.
EMISSION_BGR = np.array([0.30, 1.0, 0.08], np.float32)


@dataclass(frozen=True)
class Exposure:
    """What one capture's light and sensor did."""

    gain: float  # signal level: DN for a film yield of 1.0 in the green channel
    defocus_sigma_px: float
    vignetting: float  # relative fall-off at the image corners
    excitation_tilt: tuple[float, float]  # linear excitation gradient across the image (x, y)
    electrons_per_dn: float = 12.0
    read_noise_dn: float = 1.6
    dark_level_dn: float = 3.0
    white_balance_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0)


def illumination_at(x: np.ndarray, y: np.ndarray, exposure: Exposure) -> np.ndarray:
    """Vignetting times the excitation gradient at image positions scaled to -1..1 from
    the frame's centre to its edges (a part of the frame, such as one label, sees its share)."""
    r2 = (x * x + y * y) / 2.0
    tx, ty = exposure.excitation_tilt
    return ((1.0 - exposure.vignetting * r2) * (1.0 + tx * x + ty * y)).astype(np.float32)


def illumination(shape: tuple[int, int], exposure: Exposure) -> np.ndarray:
    """`illumination_at` over the whole image (smooth, so it is computed on a coarse grid
    and interpolated up)."""
    h, w = shape
    ch, cw = max(2, h // 16), max(2, w // 16)
    y, x = np.ogrid[-1.0 : 1.0 : ch * 1j, -1.0 : 1.0 : cw * 1j]
    return cv2.resize(illumination_at(x, y, exposure), (w, h), interpolation=cv2.INTER_LINEAR)


def defocus(emission: np.ndarray, exposure: Exposure) -> np.ndarray:
    """The (H, W) fluorescence map as the lens blurs it onto the sensor."""
    if exposure.defocus_sigma_px > 0.05:
        return cv2.GaussianBlur(emission, (0, 0), exposure.defocus_sigma_px)
    return emission


def expose(emission: np.ndarray, exposure: Exposure, rng: np.random.Generator,
           light: np.ndarray | None = None) -> np.ndarray:
    """Turn a (H, W) fluorescence map into an 8-bit BGR frame. `light`: the illumination
    over it when it is only a part of the frame (default: the whole frame's)."""
    emission = defocus(emission, exposure)
    light = illumination(emission.shape, exposure) if light is None else light
    return sense(cv2.multiply(emission, light, scale=exposure.gain), exposure, rng)


def sense(signal: np.ndarray, exposure: Exposure, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 green signal in DN -> (H, W, 3) BGR uint8: the colour filters, shot
    and read noise, 8-bit quantisation. Pixel by pixel, so it serves a whole frame or only
    the pixels a crop reads (as an (N, 1) column)."""
    gains = EMISSION_BGR * np.asarray(exposure.white_balance_bgr, np.float32)
    frame = cv2.merge([signal * g + np.float32(exposure.dark_level_dn) for g in gains])
    # shot noise (Poisson, here its Gaussian limit) plus read noise, in DN
    sigma = cv2.sqrt(frame * np.float32(1.0 / exposure.electrons_per_dn)
                     + np.float32(exposure.read_noise_dn**2))
    noise = np.empty_like(frame)
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    cv2.randn(noise, 0.0, 1.0)  # type: ignore[call-overload]  # OpenCV's stubs type a Scalar as a matrix
    frame = cv2.add(frame, cv2.multiply(sigma, noise))
    cv2.threshold(frame, 0.0, 0.0, cv2.THRESH_TOZERO, dst=frame)
    return cv2.convertScaleAbs(frame)  # rounds and saturates at 255


def add_dust(frame: np.ndarray, rng: np.random.Generator, specks: int, fibres: int) -> None:
    """Dark specks and fibres (dust on the sample or the cover glass), drawn in place."""
    shade = dust_shade(frame.shape[:2], rng, specks, fibres)
    frame[:] = (frame * shade[:, :, None]).astype(np.uint8)


def dust_shade(shape: tuple[int, ...], rng: np.random.Generator, specks: int, fibres: int) -> np.ndarray:
    """The light dust lets through over a frame of `shape` (1: none held back), drawn at random."""
    h, w = shape[:2]
    shade: np.ndarray = np.ones((h, w), np.float32)
    for _ in range(specks):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(shade, centre, int(rng.integers(2, 9)), float(rng.uniform(0.1, 0.6)), -1, cv2.LINE_AA)
    for _ in range(fibres):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        heading = rng.uniform(0, 2 * np.pi)
        points = []
        for _ in range(6):
            points.append((x, y))
            heading += rng.normal(0, 0.35)
            step = rng.uniform(10, 30)
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
        cv2.polylines(shade, [np.array(points, np.int32)], False, float(rng.uniform(0.2, 0.6)),
                      int(rng.integers(1, 4)), cv2.LINE_AA)
    return cv2.GaussianBlur(shade, (0, 0), 1.5)
