"""How alike two renders of the same label are, as the simulator's tests measure it."""

import numpy as np


def green_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pixel correlation of two BGR images' green channels (the quantum dots' emission)."""
    return float(np.corrcoef(a[..., 1].ravel().astype(float), b[..., 1].ravel().astype(float))[0, 1])
