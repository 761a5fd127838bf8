"""The overlay `puf segment --overlay` draws: a field with what was found, for a person."""

from __future__ import annotations

import json

import cv2
import numpy as np

from edge_app.layout import UNKNOWN_PATTERN
from edge_app.segment import as_uint8
from fabrication.segmentation.reasons import reason_text


def pattern_caption(record) -> str:
    """What a found label's glyph read, as the overlay writes it under the label's id: the
    pattern and its score, and whether the label got no pattern or another one than read
    (the registry's reason says why)."""
    if record.glyph_pattern is None:  # no templates: nothing was read
        return ""
    read = f"{record.glyph_pattern} {record.glyph_score:.2f}"
    if record.pattern == UNKNOWN_PATTERN:
        return f"{read}: no pattern"
    return read if record.pattern == record.glyph_pattern else f"{read}, designed {record.pattern}"


def draw_overlay(image, result, records: dict, expected: dict, rejections: list, layout):
    """The field with found labels (green, id, the pattern its glyph read and the top-left
    corner; yellow words when the label's pattern is not the one read), rejected candidates
    (red, reason) and expected labels that were not found (yellow)."""
    picture = as_uint8(image)
    if picture.ndim == 2:
        picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    scale = min(1.0, 1280 / picture.shape[1])
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.5

    def poly(corners, colour, text, thickness=2, below=False):
        points = (np.asarray(corners, float) + 0.5) * scale - 0.5
        cv2.polylines(picture, [np.round(points).astype(np.int32)], True, colour, thickness,
                      cv2.LINE_AA)
        (x, top), (_, bottom) = points.min(axis=0), points.max(axis=0)
        y = min(bottom, picture.shape[0]) - 8 if below else max(top, 0) + 18
        cv2.putText(picture, text, (int(max(x, 0)) + 6, int(y)), font, size, colour, 1, cv2.LINE_AA)
        return points

    for slot, record in records.items():
        if record.status == "found":
            points = poly(json.loads(record.corners), (80, 255, 80), record.label_id)
            cv2.circle(picture, tuple(int(v) for v in np.round(points[0])), 5, (80, 255, 80), -1)
            agrees = record.pattern == record.glyph_pattern
            (x, top) = points.min(axis=0)
            cv2.putText(picture, pattern_caption(record), (int(max(x, 0)) + 6, int(max(top, 0)) + 36), font,
                        0.45, (80, 255, 80) if agrees else (40, 220, 255), 1, cv2.LINE_AA)
        elif slot in expected:
            poly(expected[slot], (40, 220, 255),
                 f"{record.label_id}: {reason_text(record.reason)}", 1, True)
    for rejection in rejections:
        if rejection.corners is not None:
            poly(json.loads(rejection.corners), (60, 60, 255),
                 reason_text(rejection.reason))
    status = f"{len(result.labels)} found, {len(rejections)} rejected, {result.elapsed_ms:.1f} ms"
    cv2.putText(picture, status, (8, picture.shape[0] - 10), font, 0.6, (255, 255, 255), 2,
                cv2.LINE_AA)
    return picture
