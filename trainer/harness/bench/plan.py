"""What a bench run measures: its sizes and the simulated batches they come from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edge_app.errors import PufError
from fabrication.pattern_import import load_pattern_set
from trainer.harness import paper
from trainer.simdata import SimSpec, make_layout

BATCH_FIELDS = 100  # fields of one simulated batch (1,200 labels), as the trainer's films
ENROLLED_SEED = 7001  # film seeds of the enrolled batches (the model trained on 1-4, was tested on 101-102)
COUNTERFEIT_SEED = 8001  # film seeds of batches never enrolled


@dataclass(frozen=True)
class BenchPlan:
    labels: int = paper.LABELS  # distinct simulated labels enrolled (rendered, augmented, embedded)
    augmented: int = paper.AUGMENTED  # enrolled copies of each (the paper's 100: rotation 0-360, HSV V shift)
    # database size; 0: labels x augmented, every label distinct. Beyond that, stand-ins (rotated
    # copies, see database) fill it: they show capacity, memory and search time, never accuracy
    vectors: int = 0
    genuine: int = paper.QUERIES  # new handheld photos of enrolled labels
    counterfeit: int = paper.QUERIES  # handheld photos of never-enrolled labels (other films)
    clones: int = 500  # enrolled labels printed and re-photographed
    unclassified: int = paper.QUERIES  # queries of each kind also verified without classification
    exact: int = paper.QUERIES  # queries of each kind also scored by exact search (`exact`: whatever the index)
    keypoint_gallery: int = 200  # labels the exhaustive keypoint baseline compares each query with
    keypoint_queries: int = 200  # of each kind, for the exhaustive baseline
    second_stage: int = 1_000  # queries of each kind re-checked by keypoints (top-k candidates)
    whole_queries: int = 2_000  # genuine photos searched in the whole database as one index
    normalisation: int = paper.QUERIES  # genuine and counterfeit photos scored by the normalisation rules
    # enroll and photograph labels of only the first `patterns` pattern classes (0: all): each of
    # their shards holds as many distinct labels as at the full size, for a fraction of the rendering
    patterns: int = 0
    # 1: photograph the whole 800x600 frame (as before); 0: only each label's window of it, the
    # same shot for a fraction of the rendering (`fabrication.sim.field_camera.capture_label`)
    whole_photos: int = 0
    top_k: int = 5
    workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 0:
                raise PufError(f"bench size {name} must be a whole number >= 0, got {value!r}")
        if self.labels < 1 or self.augmented < 1 or self.workers < 1 or self.top_k < 1:
            raise PufError("labels, augmented copies, workers and top-k must be at least 1")
        if not self.vectors:
            object.__setattr__(self, "vectors", self.real_vectors)
        if self.vectors < self.labels * self.augmented:
            raise PufError(f"a database of {self.vectors:,} vectors cannot hold {self.labels:,} labels x "
                           f"{self.augmented} copies; lower --labels or raise --vectors")
        if self.whole_photos > 1:
            raise PufError(f"whole_photos is 0 (label windows) or 1 (whole photos), got {self.whole_photos}")
        if self.genuine < 1 or self.counterfeit < 1:
            raise PufError("a run needs at least one genuine and one counterfeit query")

    @classmethod
    def quick(cls, **overrides) -> BenchPlan:
        """A few minutes end to end: the same steps at tens of thousands of vectors."""
        sizes = dict(labels=240, genuine=500, counterfeit=500, clones=50, unclassified=500, exact=500,
                     keypoint_gallery=60, keypoint_queries=60, second_stage=200,
                     whole_queries=300, normalisation=500)
        return cls(**{**sizes, **overrides})

    @property
    def real_vectors(self) -> int:
        return self.labels * self.augmented

    @property
    def stand_in_vectors(self) -> int:
        """Vectors of stand-in labels: what no accuracy figure may count."""
        return self.vectors - self.real_vectors

    def to_dict(self) -> dict:
        return asdict(self)


def batches(count: int, first_seed: int, prefix: str, patterns: int = 0) -> list[tuple]:
    """Simulated films holding `count` labels, in batches of up to BATCH_FIELDS fields (one
    microscope capture of every label; handheld photos are taken by `queries`): (SimSpec,
    the numbers, field x 12 + slot, of the labels taken from it). With `patterns`, only
    labels of the first `patterns` pattern classes are taken, from as many whole batches as
    that needs."""
    if not patterns:
        fields = math.ceil(count / 12)
        out = []
        for i in range(math.ceil(fields / BATCH_FIELDS)):
            n = min(BATCH_FIELDS, fields - i * BATCH_FIELDS)
            cols = min(10, n)
            spec = SimSpec(f"{prefix}{i + 1}", first_seed + i, cols, math.ceil(n / cols), microscope_shots=1,
                           handheld_shots=0)
            out.append((spec, list(range(min(spec.label_count, count - i * BATCH_FIELDS * 12)))))
        return out
    out, taken = [], 0
    while taken < count:
        i = len(out)
        spec = SimSpec(f"{prefix}{i + 1}", first_seed + i, 10, BATCH_FIELDS // 10, microscope_shots=1,
                       handheld_shots=0)
        layout = make_layout(spec)
        names = load_pattern_set(spec.pattern_set).names
        if patterns > len(names):
            raise PufError(f"the films' pattern set has {len(names)} pattern classes, not {patterns}")
        wanted = set(names[:patterns])
        numbers = [n for n, name in enumerate(layout.patterns) if name in wanted][:count - taken]
        out.append((spec, numbers))
        taken += len(numbers)
    return out


def enrolled_batches(plan: BenchPlan) -> list[tuple]:
    return batches(plan.labels, ENROLLED_SEED, "BG", plan.patterns)  # every label whole: database renders each alone


def counterfeit_batches(plan: BenchPlan) -> list[tuple]:
    return batches(plan.counterfeit, COUNTERFEIT_SEED, "BC", plan.patterns)
