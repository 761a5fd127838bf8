"""The keypoint baseline: SIFT features, Lowe's ratio test, RANSAC geometric verification.

Many published PUF readers match a query to a label this way. Both images are label
crops in canonical orientation (the device's segmentation for queries, the factory's
microscope crop for labels), compared on the green channel (the film's emission) at
`SIDE` px. What every label shares is masked out before detection, as this project's first
feasibility runs found necessary: the etched border ring and the glyph's square in the centre. A match
is the number of RANSAC inliers of a similarity transform (rotation, scale, shift)
between the two keypoint sets; a pair is "the same label" at `MIN_INLIERS` or more.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

import cv2
import numpy as np

SIDE = 160  # crops are compared at this size
BORDER_FRAC = 0.10  # the etched border ring (10 of 200 um) plus segmentation error
GLYPH_BOX = (0.27, 0.73)  # the 80 um glyph square centred in the 200 um label, with margin
RATIO = 0.75  # Lowe's ratio test
FEATURES = 150  # the strongest keypoints kept a crop
RANSAC_PX = 3.0  # reprojection error allowed, at SIDE px
MIN_INLIERS = 10  # fixed before measuring: a pair of different labels rarely keeps more than a few


def _mask(side: int = SIDE) -> np.ndarray:
    mask = np.zeros((side, side), np.uint8)
    a, b = int(round(BORDER_FRAC * side)), int(round((1 - BORDER_FRAC) * side))
    mask[a:b, a:b] = 255
    g0, g1 = int(round(GLYPH_BOX[0] * side)), int(round(GLYPH_BOX[1] * side))
    mask[g0:g1, g0:g1] = 0
    return mask


_MASK = _mask()
_SIFT = None


@dataclass
class Features:
    points: np.ndarray  # (n, 2) float32 keypoint positions at SIDE px
    descriptors: np.ndarray | None  # (n, 128) float32


def features(crop: np.ndarray) -> Features:
    """SIFT keypoints of a label crop (BGR or gray, any size), outside the shared border and glyph."""
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=FEATURES)  # type: ignore[attr-defined]  # missing from OpenCV's stubs
    gray = crop[:, :, 1] if crop.ndim == 3 else crop
    gray = cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX)  # type: ignore[call-overload]  # stubs: dst is optional
    keypoints, descriptors = _SIFT.detectAndCompute(gray, _MASK)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    return Features(points, descriptors)


_MATCHER = cv2.BFMatcher(cv2.NORM_L2)


def inliers(query: Features, label: Features) -> int:
    """RANSAC inliers of a similarity transform among the ratio-test matches (0 if too few)."""
    if query.descriptors is None or label.descriptors is None or len(query.points) < 2 or len(label.points) < 2:
        return 0
    pairs = _MATCHER.knnMatch(query.descriptors, label.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 3:
        return len(good) // 3  # 0: too few for a transform
    src = query.points[[m.queryIdx for m in good]]
    dst = label.points[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                          maxIters=2000, confidence=0.995)
    return int(mask.sum()) if mask is not None else 0


def same_label(query: Features, label: Features) -> bool:
    return inliers(query, label) >= MIN_INLIERS


@dataclass
class GalleryResult:
    label_id: str | None  # the best-matching label when it reaches MIN_INLIERS
    inliers: int  # of the best-matching label
    extract_ms: float
    match_ms: float  # all comparisons with the gallery


def identify(query_crop: np.ndarray, gallery: dict[str, Features]) -> GalleryResult:
    """The exhaustive baseline: compare a query with every label of the gallery."""
    t0 = perf_counter()
    q = features(query_crop)
    t1 = perf_counter()
    best, best_inliers = None, -1
    for label_id, label in gallery.items():
        n = inliers(q, label)
        if n > best_inliers:
            best, best_inliers = label_id, n
    t2 = perf_counter()
    return GalleryResult(best if best_inliers >= MIN_INLIERS else None, best_inliers, (t1 - t0) * 1000,
                         (t2 - t1) * 1000)


@dataclass
class SecondStage:
    """Keypoint re-check of the fingerprint search's top candidates."""

    candidates: list[tuple[str, float]]  # (label id, fingerprint score), best first
    inliers: list[int]  # keypoint inliers with each candidate's enrollment crop
    extract_ms: float
    match_ms: list[float]  # time of each candidate's comparison

    def decide(self, k: int, threshold: float | None) -> tuple[str | None, float]:
        """The accepted label when re-checking the top `k` candidates, and the added time (ms).
        With a fingerprint `threshold`, a candidate must clear it AND match by keypoints (the
        second stage only vetoes); with None, keypoints decide among the top k."""
        added = self.extract_ms + sum(self.match_ms[:k])
        for (label, score), n in zip(self.candidates[:k], self.inliers[:k], strict=False):
            if (threshold is None or score >= threshold) and n >= MIN_INLIERS:
                return label, added
        return None, added


def second_stage(query_crop: np.ndarray, candidates: list[tuple[str, float]], features_of) -> SecondStage:
    """Compare a query with its candidates' enrollment keypoints (`features_of(label_id)`: a
    device would store them beside the fingerprints, so their extraction is not timed)."""
    t0 = perf_counter()
    q = features(query_crop)
    extract = (perf_counter() - t0) * 1000
    counts, times = [], []
    for label, _ in candidates:
        enrolled = features_of(label)
        t = perf_counter()
        counts.append(inliers(q, enrolled))
        times.append((perf_counter() - t) * 1000)
    return SecondStage(candidates, counts, extract, times)
