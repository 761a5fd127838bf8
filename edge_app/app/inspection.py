"""What the handheld app does, apart from showing it: open the device's bundle, verify a
capture and record it in the journal, read the history, install a bundle from a folder.

No Kivy here. An `Inspector` is used from the app's worker thread only (it owns the
model, the shards and the journal's SQLite connection). What a screen shows is computed
here as plain data (`BundleStatus`, `Outcome`) and in plain functions (`choose`,
`plain_reason`), so the UI only lays it out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TITLES = {"genuine": "GENUINE", "counterfeit": "COUNTERFEIT", "unreadable": "RETAKE"}
CROP_PX = 192  # the crop kept in the journal and shown beside the enrolled label's thumbnail
PHOTO_PX = 480  # the width of the photo shown when no label could be cut from it
UPDATE_HINT = "Go to Settings and tap 'Update bundle from folder' (a USB stick with the bundle your factory sent)."


@dataclass(frozen=True)
class BundleStatus:
    """The bundle the app verifies with, or why there is none."""

    path: Path | None
    version: str | None = None
    labels: int = 0
    signer: str | None = None
    problem: str | None = None  # what is wrong and what to do, in words
    warning: str | None = None  # usable, but with a caveat (an uncalibrated threshold)
    release: str | None = None  # its sequence and signing time (`edge_app.bundle.Release.describe`)

    @property
    def ready(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if not self.ready:
            return self.problem or ""
        text = f"bundle {self.version}: {self.labels:,} labels"
        return f"{text}. WARNING: {self.warning}" if self.warning else text


@dataclass(frozen=True)
class Outcome:
    """One capture's verdict, as the verdict screen shows it."""

    kind: str  # genuine | counterfeit | unreadable: the verdict shown
    title: str  # GENUINE | COUNTERFEIT | RETAKE
    message: str  # what it means, in plain words
    detail: str  # the verifier's own reason
    label_id: str | None
    score: float | None
    threshold: float
    pattern: str | None
    labels: int  # labels found in the photo (0 when none)
    summary: str  # "" for one label, else how many and of which verdict
    crop: np.ndarray | None  # the label cut from the photo (BGR), or the downscaled photo when none was
    thumbnail: np.ndarray | None  # the enrolled label's, when the bundle carries thumbnails
    verify_ms: float  # the verifier's own time for the photo
    entry_id: int | None  # the journal row of the verdict shown
    source: str


# the order a photo's verdicts are shown and counted in: a photo reads genuine only when
# every label in it is genuine (as `puf verify`'s exit status), so a label that could not
# be checked (blurred, or beyond the labels verified per photo) comes before the genuine ones
SHOWN_FIRST = ("counterfeit", "unreadable", "genuine")


def choose(verdicts: list) -> int:
    """Which of a photo's verdicts to show: a counterfeit first (it is the one that
    matters), else the first unreadable (a label not checked), else the best-scoring genuine."""
    for kind in SHOWN_FIRST:
        found = [i for i, v in enumerate(verdicts) if v.verdict == kind]
        if found:
            return max(found, key=lambda i: verdicts[i].score or 0.0) if kind == "genuine" else found[0]
    return 0


def plain_reason(verdict) -> str:
    """What the inspector should know or do, in words, for a verdict."""
    reason = verdict.reason
    if verdict.verdict == "genuine":
        return f"This label is enrolled as {verdict.label_id}."
    if verdict.verdict == "counterfeit":
        if verdict.score is None:
            return "No enrolled label of this pattern: this label was never made by the factory."
        return "No enrolled label matches this one: do not accept it."
    if reason.startswith("no label found"):
        return "No whole label in the photo. Put the label inside the guide box and take the photo again."
    if reason.startswith("out of focus"):
        return "The photo is blurred. Hold the device still until Focus shows Sharp, then take it again."
    if reason.startswith("too dark"):
        return "The photo is too dark. Hold the device flat on the label, or raise the exposure in Settings."
    if reason.startswith("not checked"):
        return "Too many labels in one photo: some were not checked. Photograph fewer labels at a time."
    if reason.startswith("overexposed"):
        return "The photo is too bright. Lower the exposure in Settings, then take it again."
    return reason[:1].upper() + reason[1:]


def summarise(verdicts: list, shown: int) -> str:
    """How many labels of each verdict the photo holds, counterfeits first; "" for one label."""
    if len(verdicts) < 2:
        return ""
    counts = {kind: sum(v.verdict == kind for v in verdicts) for kind in SHOWN_FIRST}
    parts = ", ".join(f"{n} {TITLES[k].lower()}" for k, n in counts.items() if n)
    return f"{len(verdicts)} labels in the photo ({parts}); showing the {TITLES[verdicts[shown].verdict].lower()} one"


def downscale(image: np.ndarray, width: int) -> np.ndarray:
    import cv2

    if image.shape[1] <= width:
        return image
    height = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class Inspector:
    """The device's bundle, verifier and journal. `bundle` and `trusted_keys` override the
    store's (`--bundle`, `--trusted-keys`); an installed update always goes to the store."""

    def __init__(self, store, bundle: Path | None = None, trusted_keys: Path | None = None) -> None:
        self.store = store
        self.bundle_override = bundle
        self.trusted_override = trusted_keys
        self.verifier = None
        self.thumbnails = None
        self.status = BundleStatus(None, problem="The bundle has not been opened yet.")
        self._journal = None

    @property
    def journal(self):
        if self._journal is None:
            from edge_app.journal import Journal

            self._journal = Journal(self.store.journal_path)
        return self._journal

    def trusted_keys(self) -> Path:
        return self.trusted_override or self.store.trusted_keys_dir()

    def label_px(self) -> float | None:
        """The label side set in Settings (px), or None: found in each photo. A stored value
        that is not a usable size (a hand-edited file) counts as auto, and is logged."""
        from edge_app.errors import PufError
        from edge_app.label_size import parse_label_px

        value = self.store.load_settings().get("label_px")
        try:
            return parse_label_px(value)
        except PufError as error:
            log.warning("ignoring the label size in the settings (%s): found in each photo instead", error)
            return None

    def refresh_limits(self) -> float | None:
        """Make the verifier use the label size now in the settings (no bundle reload);
        returns the size in use (None: auto)."""
        label_px = self.label_px()
        if self.verifier is not None:
            self.verifier.limits = replace(self.verifier.limits, label_px=label_px)
        return label_px

    def open(self) -> BundleStatus:
        """Open the bundle to verify with; a missing or refused bundle is a status that
        says what to do, never an exception."""
        from edge_app.bundle import load_bundle
        from edge_app.device_store import bundle_version, open_verifier
        from edge_app.errors import PufError
        from edge_app.thumbnails import Thumbnails

        self.verifier = self.thumbnails = None
        path = self.bundle_override or self.store.bundle_path()
        if path is None:
            self.status = BundleStatus(None, problem=f"No bundle is installed: labels cannot be checked. {UPDATE_HINT}")
            return self.status
        try:
            bundle = load_bundle(path, self.trusted_keys())
            verifier = open_verifier(bundle, self.label_px())
            self.thumbnails = Thumbnails.open(bundle.path)
            self.verifier = verifier
        except PufError as error:
            self.status = BundleStatus(path, problem=f"The bundle cannot be used: {error}. {UPDATE_HINT}")
            return self.status
        except Exception as error:  # a damaged bundle must not stop the app: say so, keep the traceback in the log
            log.exception("opening the bundle %s failed", path)
            self.status = BundleStatus(path, problem=f"The bundle cannot be used ({type(error).__name__}: {error}). "
                                                      f"{UPDATE_HINT}")
            return self.status
        self.status = BundleStatus(bundle.path, bundle_version(bundle), len(bundle.shards), bundle.signer,
                                   warning=bundle.uncalibrated_warning, release=bundle.release.describe())
        return self.status

    def install(self, folder: Path, allow_older: bool = False) -> BundleStatus:
        """Check and install the bundle in `folder` (a USB stick), then verify with it. A
        refused bundle raises PufError, and the current bundle stays in use; `allow_older`
        installs one whose sequence is not above the current one's (going back on purpose)."""
        self.store.install_bundle(Path(folder), self.trusted_keys(), allow_older=allow_older)
        self.bundle_override = None
        return self.open()

    def inspect(self, frame) -> Outcome:
        """Verify a captured frame, record every label's verdict in the journal, and say
        which one to show."""
        from edge_app.segment import crop_label

        if self.verifier is None:
            raise RuntimeError("no bundle to verify with")
        verdicts = self.verifier.verify_image(frame.image, frame.source)
        entries, crops = [], []
        for verdict in verdicts:
            crop = crop_label(frame.image, np.asarray(verdict.corners_px), CROP_PX) if verdict.corners_px else None
            crops.append(crop)
            entries.append(self.journal.record(verdict, crop, self.status.version or ""))
        shown = choose(verdicts)
        verdict = verdicts[shown]
        thumbnail = None
        if verdict.label_id is not None and self.thumbnails is not None:
            thumbnail = self.thumbnails.get(verdict.label_id, verdict.pattern)
        crop = crops[shown] if crops[shown] is not None else downscale(frame.image, PHOTO_PX)
        return Outcome(verdict.verdict, TITLES[verdict.verdict], plain_reason(verdict), verdict.reason,
                       verdict.label_id, verdict.score, verdict.threshold, verdict.pattern,
                       sum(v.corners_px is not None for v in verdicts), summarise(verdicts, shown), crop, thumbnail,
                       float(verdict.timings_ms.get("total", 0.0)), entries[shown], frame.source)

    def history(self, limit: int = 100) -> list:
        return self.journal.recent(limit)

    def crop(self, entry_id: int) -> np.ndarray | None:
        return self.journal.crop(entry_id)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
