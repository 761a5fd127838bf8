"""The source paper's published figures, written down once: the demo's and the bench's reports
(and the benchmark tools) quote them from here.

He, Zhang, Xing, Lang, Wu, Yang: *Automated production of batched unclonable micro-pattern
anti-counterfeiting labels with strong robustness and rapid recognition speed*. Its recognition
experiment: 41,556 labels augmented 100 times (4,155,600 images) enrolled in Faiss as "real",
10,000 queries of each kind, timed on the authors' machine.
"""

from __future__ import annotations

# The factory line
ETCH = (1_200, 3)  # labels etched, seconds
PHOTOGRAPH = (200, 4)  # microscope images (a batch), about this many minutes
SEGMENT = (2_400, 40)  # labels cut from a batch's images, about this many seconds
SEGMENT_FIELD_MS = 200  # one 1920x1440 field, about

# The recognition experiment
PATTERN_CLASSES = 44
LABELS = 41_556  # labels enrolled
AUGMENTED = 100  # enrolled copies of each (rotation 0-360 degrees, HSV V shift in (-45, 90))
VECTORS = LABELS * AUGMENTED  # 4,155,600 enrolled images
QUERIES = 10_000  # of each kind
MODEL_MS = (30.7, 31.7)  # feature extraction, one label
SEARCH_SHARD_MS = (8.3, 8.7)  # inside the predicted pattern's shard (8.5 ms typical)
SEARCH_WHOLE_MS = (387, 395)  # the whole database
TOTAL_MS = 40  # photo to verdict with classification, about
TOTAL_WHOLE_MS = 420  # without, about
# accuracy in percent: genuine accepted, counterfeit rejected
WITH_CLASSIFICATION = (98.87, 98.73)
WITHOUT_CLASSIFICATION = (99.77, 98.7)


def span(values: tuple[float, float]) -> str:
    """A figure the paper gives as a range, as it gives it: "30.7-31.7"."""
    return f"{values[0]:g}-{values[1]:g}"


def typical(values: tuple[float, float]) -> float:
    """The middle of a range the paper gives."""
    return round((values[0] + values[1]) / 2, 3)


def percent(value: float) -> str:
    return f"{value:g}%"
