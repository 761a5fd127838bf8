"""The verify pipeline: photo -> labels -> one model run -> shard search -> verdict.

For every label found in a photo:

1. **segment** (`edge_app.segment`, any rotation; the bundle's glyph templates turn each
   crop to its canonical orientation). No label, or a label too blurred, dark or
   saturated to fingerprint, is ``unreadable``: retake the photo.
2. **model**: one run of the bundle's network over all the photo's crops gives each a
   fingerprint and pattern probabilities. A crop whose orientation the glyph could not
   settle goes in as its four quarter turns; the best-scoring turn counts.
3. **search** the shards of the patterns the two readings of the glyph allow together:
   the pattern head allows its top pattern, and the runner-up too when it is unsure (top
   probability below `unsure_below`); segmentation's glyph template match, when it is
   sure (`glyph_reading`: the label's orientation settled and the best template ahead of
   the next by `GLYPH_SURE_MARGIN`), allows only the pattern it reads. A match is accepted
   only in a pattern both allow: a label whose glyph reads Y is never accepted as an
   enrolled V label because the head's runner-up was V. When the two readings share no
   pattern the label is ``unreadable`` (retake), never genuine. Without classification
   (``classify=False``, the paper's slower mode) every shard is searched, and the same
   rule decides.
4. **decide**: ``genuine`` when the best score clears the bundle's threshold and the
   matched label's pattern is one the readings allow; otherwise ``counterfeit``. What a
   counterfeit verdict knows is that the label is not among the bundle's labels as of the
   bundle's date (a label made since then needs a newer bundle), and its reason says so.
   A revoked label (stolen, recalled) is no longer in the shards; its fingerprints are kept in
   the bundle's signed revocation list (`edge_app.revocations`), searched in the same
   patterns: a match there above the threshold, and above any enrolled match, is ``revoked``,
   with the label id and the reason it was revoked.

Every label found gets a verdict: a photo holding more labels than `CaptureLimits.max_labels`
(those nearest its centre are verified) gives each label beyond them an ``unreadable``
verdict that says how many were not checked, so such a photo never reads as all genuine.

A verdict is the record docs/architecture.md describes ("Verdict") plus a few fields that say why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np

from edge_app.bundle import Bundle
from edge_app.label_size import estimate_label_px
from edge_app.photo_size import STILL_LABEL_PX
from edge_app.preprocess import preprocess_batch
from edge_app.segment import as_uint8, segment
from edge_app.verdicts import Kind, Reason, Why

if TYPE_CHECKING:
    from edge_app.shards import Match

# a glyph template match this far ahead of the next pattern is a sure reading: correct
# readings of handheld photos lead by 0.12 or more (144 of 144 captures of the simulated batch)
GLYPH_SURE_MARGIN = 0.05


@dataclass(frozen=True)
class CaptureLimits:
    """What a usable handheld capture looks like (`edge_app.label_crop.Quality` figures)."""

    # expected outer side of a label in the photo, px; None: found in each photo
    # (`edge_app.label_size.estimate_label_px`), so any magnification works
    label_px: float | None = None
    size_tolerance: float = 0.3
    # labels verified per photo (those nearest its centre), a bound on one photo's time and
    # memory; every label beyond them is an unreadable "not checked" verdict, never dropped
    max_labels: int = 64
    # border widths over the border edge's rise (higher is sharper): sharp simulated handheld
    # photos measure 2.1-3.7 on any film, Gaussian blur of 1.3% of the label side (4 px at
    # 300 px) or motion of 5% (15 px) below 1.6 (tools/bench_quality_gate.py)
    min_sharpness: float = 1.7
    min_exposure: float = 12.0  # median film level, 0-255
    min_border_contrast: float = 0.45  # 1 - border level / film level: sharp photos measure about 0.8
    max_clipped: float = 0.05  # fraction of saturated pixels


def find_labels(image: np.ndarray, limits: CaptureLimits, templates):
    """The device's segmentation of a handheld photo, any rotation, turned upright by the
    glyph `templates`, at the label size set; or, when it is automatic, first at the
    camera's nominal size (the usual photo: no extra cost) and, when that finds no label, at
    the size found in the photo (`estimate_label_px`: another magnification)."""
    def at(label_px: float):
        return segment(image, label_px, k=limits.max_labels, size_tolerance=limits.size_tolerance,
                       rotation_deg=None, templates=templates)

    if limits.label_px is not None:
        return at(limits.label_px)
    nominal = at(STILL_LABEL_PX)
    if nominal.labels:
        return nominal
    found = estimate_label_px(image)
    if found is None or abs(found / STILL_LABEL_PX - 1) <= limits.size_tolerance / 2:
        return nominal  # the size found is the one just tried
    other = at(found)
    return other if other.labels else nominal


def glyph_reading(label) -> str | None:
    """The pattern segmentation's glyph template match reads on a found label, when the reading
    is sure enough to restrict the patterns a match may have (see the module's docstring): its
    orientation settled (a glyph turned by an unsettled quarter turn can read as another
    pattern, 6 as 9) and the best template ahead of the next by `GLYPH_SURE_MARGIN`."""
    glyph = label.glyph
    if glyph is None or label.orientation not in ("glyph", "prior") or glyph.pattern_margin < GLYPH_SURE_MARGIN:
        return None
    return glyph.pattern


def capture_problem(q, limits: CaptureLimits) -> Why | None:
    """Why a label's capture (its `edge_app.label_crop.Quality`) is unreadable, or None."""
    if q.sharpness < limits.min_sharpness:
        return Reason.BLURRED.of(sharpness=q.sharpness, limit=limits.min_sharpness)
    if q.border_contrast < limits.min_border_contrast:
        return Reason.WASHED_OUT.of(contrast=q.border_contrast, limit=limits.min_border_contrast)
    if q.exposure < limits.min_exposure:
        return Reason.TOO_DARK.of(level=q.exposure, limit=limits.min_exposure)
    if q.clipped > limits.max_clipped:
        return Reason.OVEREXPOSED.of(clipped=q.clipped)
    return None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


@dataclass(kw_only=True)
class Verdict:
    verdict: Kind
    why: Why  # the reason, in no language yet (`reason` is its English)
    threshold: float
    label_id: str | None = None  # the matched label (genuine and revoked only)
    score: float | None = None  # best cosine similarity found
    pattern: str | None = None  # the pattern the model read
    pattern_confidence: float | None = None
    timings_ms: dict = field(default_factory=dict)  # segment, model, search, total
    source: str = ""  # the image (and label index in it)
    searched: list[str] = field(default_factory=list)  # the patterns whose shards were searched
    corners_px: list | None = None  # where the label is in the photo

    @property
    def reason(self) -> str:
        """Why, in English words (`puf verify`'s and the journal's)."""
        return self.why.text

    def to_dict(self) -> dict:
        """The `puf verify --json` record: its fields and values are a format; ``reason_code``
        names the reason whatever the language."""
        return {"verdict": str(self.verdict), "label_id": self.label_id, "score": _rounded(self.score),
                "threshold": self.threshold, "pattern": self.pattern,
                "pattern_confidence": _rounded(self.pattern_confidence),
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
                "reason": self.reason, "reason_code": str(self.why.reason), "source": self.source,
                "searched": list(self.searched), "corners_px": self.corners_px}


@dataclass(kw_only=True)
class Lookup:
    """One crop's way through the model and the shards."""

    match: Match | None  # the best enrolled vector found
    pattern: str  # the pattern read (the first both readings allow, else the head's top)
    confidence: float  # the head's probability of it
    allowed: list[str]  # patterns a genuine match may have: the head's and the glyph's readings together
    searched: list[str]  # patterns whose shards were searched
    embedding: np.ndarray  # the crop's fingerprint
    glyph: str | None = None  # the glyph template match's sure reading
    revoked: Match | None = None  # the best revoked label found (`edge_app.revocations`)

    @property
    def best_score(self) -> float:
        return max([m.score for m in (self.match, self.revoked) if m is not None], default=-np.inf)


class Verifier:
    """Verifies photos against one bundle."""

    def __init__(self, bundle: Bundle, *, classify: bool = True, unsure_below: float = 0.9,
                 limits: CaptureLimits = CaptureLimits(), model_format: str | None = None,
                 num_threads: int = 2) -> None:
        self.bundle = bundle
        self.classify = classify
        self.unsure_below = unsure_below
        self.limits = limits
        enrolled_with = bundle.manifest.shards.model_format if bundle.manifest.shards else None
        self.runner = bundle.runner(model_format or enrolled_with, num_threads)
        self.classes = bundle.pattern_classes
        self.threshold = bundle.threshold
        created = bundle.release.created
        # the day the bundle's labels are as of: its signing date (None: a bundle that does not say)
        self.updated = f"{created:%Y-%m-%d}" if created is not None else None

    def verify_image(self, image: np.ndarray, source: str = "") -> list[Verdict]:
        """One verdict per label found (one ``unreadable`` verdict when none is)."""
        start = perf_counter()
        limits = self.limits
        image = as_uint8(image)
        result = find_labels(image, limits, self.bundle.templates)
        segment_ms = (perf_counter() - start) * 1000
        if not result.labels:
            return [self._unreadable(self._none_found(image, result), start, segment_ms, source)]
        problems = [capture_problem(label.quality, limits) for label in result.labels]
        usable = [i for i, problem in enumerate(problems) if problem is None]
        crops, owners, glyphs = [], [], []
        for i in usable:
            label = result.labels[i]
            turns = (0,) if label.orientation in ("glyph", "prior") else (0, 1, 2, 3)
            for turn in turns:
                crops.append(np.ascontiguousarray(np.rot90(label.crop, -turn)))
                owners.append(i)
                glyphs.append(glyph_reading(label))
        verdicts = self.verify_crops(crops, owners, start, segment_ms, glyphs) if crops else {}
        unchecked = [r.corners for r in result.rejections if r.reason == "excess"]
        why = Reason.NOT_CHECKED.of(unchecked=len(unchecked), labels=len(result.labels) + len(unchecked),
                                    limit=limits.max_labels)
        found = [(verdicts[i] if problem is None else self._unreadable(problem, start, segment_ms), label.corners)
                 for i, (label, problem) in enumerate(zip(result.labels, problems, strict=True))]
        found += [(self._unreadable(why, start, segment_ms), corners) for corners in unchecked]
        for i, (verdict, corners) in enumerate(found):
            verdict.source = f"{source}#{i}" if source else f"#{i}"
            verdict.corners_px = np.round(corners, 1).tolist()
        return [verdict for verdict, _ in found]

    def _unreadable(self, why: Why, start: float, segment_ms: float, source: str = "") -> Verdict:
        return Verdict(verdict=Kind.UNREADABLE, why=why, threshold=self.threshold, source=source,
                       timings_ms={"segment": segment_ms, "model": 0.0, "search": 0.0,
                                   "total": (perf_counter() - start) * 1000})

    def _none_found(self, image: np.ndarray, result) -> Why:
        """Why no label was found, and what to do: a label of another size than the one
        set is not a matter of framing."""
        notes = "".join(f"; {note}" for note in result.notes)
        if self.limits.label_px is not None:
            found = estimate_label_px(image)
            if found is not None and abs(found / self.limits.label_px - 1) > self.limits.size_tolerance:
                return Reason.WRONG_SIZE.of(notes=notes, found=found, label_px=self.limits.label_px,
                                            tolerance=self.limits.size_tolerance)
        cut = sum(r.reason == "edge" for r in result.rejections)
        if cut:
            notes += f" ({cut} cut by the photo's edge)"
        return Reason.NO_LABEL.of(notes=notes)

    def lookup(self, crops: list[np.ndarray], glyphs: list[str | None] | None = None
               ) -> tuple[list[Lookup], float, float]:
        """Run the model once over canonical crops and search each one's shards; the
        lookups, and the model and search times (ms) of the whole batch. `glyphs` are the
        patterns segmentation's template match read surely (`glyph_reading`; None: no sure
        reading): a match is allowed only in a pattern both readings allow."""
        t0 = perf_counter()
        out = self.runner.run(preprocess_batch(crops, self.runner.preprocess))
        model_ms = (perf_counter() - t0) * 1000
        probs = out.pattern_probabilities()
        order = np.argsort(-probs, axis=1)
        lookups = []
        glyphs = glyphs or [None] * len(crops)
        for row, ranks, embedding, glyph in zip(probs, order, out.embedding, glyphs, strict=True):
            head = [int(ranks[0])]
            if row[ranks[0]] < self.unsure_below and len(ranks) > 1:
                head.append(int(ranks[1]))
            allowed = [i for i in head if glyph is None or self.classes[i] == glyph]
            read = allowed[0] if allowed else head[0]
            names = [self.classes[i] for i in allowed]
            searched = names if self.classify else self.bundle.shards.patterns
            lookups.append(Lookup(match=None, pattern=self.classes[read], confidence=float(row[read]), allowed=names,
                                  searched=searched, embedding=embedding, glyph=glyph))
        t0 = perf_counter()
        matches = self.bundle.shards.search(out.embedding, [lookup.searched for lookup in lookups])
        revoked = self.bundle.revoked.search(out.embedding, [lookup.searched for lookup in lookups])
        search_ms = (perf_counter() - t0) * 1000
        for lookup, match, gone in zip(lookups, matches, revoked, strict=True):
            lookup.match, lookup.revoked = match, gone
        return lookups, model_ms, search_ms

    def decide(self, lookup: Lookup, timings: dict) -> Verdict:
        match, pattern = lookup.match, lookup.pattern

        def verdict(why: Why, label_id: str | None = None, score: float | None = None) -> Verdict:
            return Verdict(verdict=why.reason.kind, why=why, label_id=label_id, score=score,
                           threshold=self.threshold, pattern=pattern, pattern_confidence=lookup.confidence,
                           timings_ms=dict(timings), searched=lookup.searched)

        if not lookup.allowed:
            return verdict(Reason.GLYPHS_DISAGREE.of(pattern=pattern, confidence=lookup.confidence,
                                                     glyph=lookup.glyph))
        gone = lookup.revoked
        if gone is not None and gone.score >= self.threshold and gone.pattern in lookup.allowed \
                and (match is None or gone.score >= match.score):
            entry = self.bundle.revoked.listing.get(gone.label_id)
            why = (Reason.REVOKED.of(label_id=gone.label_id, time=entry.time, reason=entry.reason) if entry else
                   Reason.REVOKED_UNLISTED.of(label_id=gone.label_id))
            return verdict(why, gone.label_id, gone.score)
        updated = self.updated or "on a date it does not give"
        if match is None:
            return verdict(Reason.PATTERN_NOT_ENROLLED.of(updated=updated, pattern=pattern))
        if match.score >= self.threshold and match.pattern in lookup.allowed:
            return verdict(Reason.MATCHES.of(label_id=match.label_id), match.label_id, match.score)
        if match.score < self.threshold:
            return verdict(Reason.BELOW_THRESHOLD.of(updated=updated, score=match.score, threshold=self.threshold),
                           score=match.score)
        return verdict(Reason.OTHER_PATTERN.of(updated=updated, pattern=match.pattern,
                                               allowed=" or ".join(lookup.allowed)), score=match.score)

    def verify_crops(self, crops: list[np.ndarray], owners: list[int] | None = None, start: float | None = None,
                     segment_ms: float = 0.0, glyphs: list[str | None] | None = None) -> dict[int, Verdict]:
        """Verdicts for canonical crops (several crops may share an owner: the best counts)."""
        start = perf_counter() if start is None else start
        owners = list(range(len(crops))) if owners is None else owners
        lookups, model_ms, search_ms = self.lookup(crops, glyphs)
        scores = [lk.best_score for lk in lookups]
        best: dict[int, int] = {}
        for j, owner in enumerate(owners):
            if owner not in best or scores[j] > scores[best[owner]]:
                best[owner] = j
        timings = {"segment": segment_ms, "model": model_ms, "search": search_ms,
                   "total": (perf_counter() - start) * 1000}
        return {owner: self.decide(lookups[j], timings) for owner, j in best.items()}
