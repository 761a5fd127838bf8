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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_app.app.i18n import N_, _
from edge_app.bundle import load_bundle
from edge_app.device_key import device_key
from edge_app.device_store import bundle_version, open_verifier
from edge_app.errors import BundleRefused, CaptureUnusable, HardwareStopped, NoTrustedKeys, PufError
from edge_app.journal import Journal
from edge_app.label_size import parse_label_px
from edge_app.segment import crop_label
from edge_app.signing import load_trusted_keys
from edge_app.thumbnails import Thumbnails
from edge_app.trust_root import root_keys
from edge_app.verdicts import Kind, Reason

if TYPE_CHECKING:
    from edge_app.thumbnails import Thumbnails
    from edge_app.verify import Verifier

log = logging.getLogger(__name__)

# keyed by kind; a journal's verdict is a str, and may be one this app does not know
TITLES: dict[str, str] = {Kind.GENUINE: N_("GENUINE"), Kind.COUNTERFEIT: N_("COUNTERFEIT"),
                          Kind.REVOKED: N_("REVOKED"), Kind.UNREADABLE: N_("RETAKE")}
KIND_WORDS: dict[str, str] = {Kind.GENUINE: N_("genuine"), Kind.COUNTERFEIT: N_("counterfeit"),
                              Kind.REVOKED: N_("revoked"), Kind.UNREADABLE: N_("retake")}  # in a sentence
CROP_PX = 192  # the crop kept in the journal and shown beside the enrolled label's thumbnail
PHOTO_PX = 480  # the width of the photo shown when no label could be cut from it
UPDATE_HINT = N_("Go to Settings and tap 'Update bundle from folder' (a USB stick with the bundle your factory "
                 "sent).")
NOT_OPENED = N_("The bundle has not been opened yet.")
NOT_SET_UP = N_("This device trusts no factory's key yet, so it cannot check a bundle or a label. Ask whoever "
                "looks after the device to set it up with your factory's public key.")
CAMERA_STOPPED = N_("The camera stopped: {cause}. Choose it again in Settings.")
PHOTO_UNUSABLE = N_("The photo cannot be used: {cause}. Take it again.")


class Trouble(StrEnum):
    """A failure as the app tells them apart: by the kind of PufError (`edge_app.errors`),
    never by its words, which are the user's to read."""

    BUNDLE_REFUSED = "bundle refused"  # the bundle in use stays in use
    CAPTURE_UNUSABLE = "capture unusable"  # this photo only: take it again, the camera stays
    HARDWARE_STOPPED = "hardware stopped"  # the camera is closed: choose it again in Settings
    OTHER = "other"  # another PufError: its own words say what to do
    BUG = "bug"  # not a PufError: its traceback goes to the log


def trouble_of(error: BaseException) -> Trouble:
    """The kind of `error`, for the screen that shows it."""
    kinds = ((BundleRefused, Trouble.BUNDLE_REFUSED), (CaptureUnusable, Trouble.CAPTURE_UNUSABLE),
             (HardwareStopped, Trouble.HARDWARE_STOPPED), (PufError, Trouble.OTHER))
    return next((trouble for kind, trouble in kinds if isinstance(error, kind)), Trouble.BUG)


@dataclass(frozen=True)
class BundleStatus:
    """The bundle the app verifies with, or why there is none."""

    path: Path | None
    version: str | None = None
    labels: int = 0
    signer: str | None = None
    problem: str | None = None  # what is wrong and what to do: a catalogue string, {cause} and {hint} filled in
    cause: str = ""  # the error behind the problem, in the words of the code that raised it
    warning: str | None = None  # usable, but with a caveat (an uncalibrated threshold)
    release: str | None = None  # its sequence and signing time (`edge_app.bundle_format.Release.describe`)

    @property
    def ready(self) -> bool:
        return self.problem is None

    def problem_text(self) -> str:
        """The problem in the language in use ("" when ready)."""
        return _(self.problem).format(cause=self.cause, hint=_(UPDATE_HINT)) if self.problem else ""

    def describe(self) -> str:
        if not self.ready:
            return self.problem_text()
        text = _("bundle {version}: {labels:,} labels").format(version=self.version, labels=self.labels)
        return _("{text}. WARNING: {warning}").format(text=text, warning=self.warning) if self.warning else text


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One capture's verdict, as the verdict screen shows it."""

    kind: Kind  # the verdict shown
    detail: str  # the verifier's own reason
    label_id: str | None
    score: float | None
    threshold: float
    pattern: str | None
    labels: int  # labels found in the photo (0 when none)
    verdicts: list  # every label's Verdict
    shown: int  # the one shown (`choose`)
    crop: np.ndarray | None  # the label cut from the photo (BGR), or the downscaled photo when none was
    thumbnail: np.ndarray | None  # the enrolled label's, when the bundle carries thumbnails
    verify_ms: float  # the verifier's own time for the photo
    entry_id: int | None  # the journal row of the verdict shown
    source: str
    updated: str | None = None  # the day the bundle's labels are as of (`edge_app.verify.Verifier.updated`)

    # the words are made when shown, so a screen shows them in the language in use
    @property
    def title(self) -> str:
        """GENUINE | COUNTERFEIT | REVOKED | RETAKE."""
        return _(TITLES[self.kind])

    @property
    def message(self) -> str:
        """What it means, in plain words."""
        return plain_reason(self.verdicts[self.shown], self.updated)

    @property
    def summary(self) -> str:
        """"" for one label, else how many and of which verdict."""
        return summarise(self.verdicts, self.shown)


# the order a photo's verdicts are shown and counted in: a photo reads genuine only when
# every label in it is genuine (as `puf verify`'s exit status), so a label that could not
# be checked (blurred, or beyond the labels verified per photo) comes before the genuine ones;
# a revoked label (stolen, recalled: known and named) before a counterfeit
SHOWN_FIRST = (Kind.REVOKED, Kind.COUNTERFEIT, Kind.UNREADABLE, Kind.GENUINE)


def choose(verdicts: list) -> int:
    """Which of a photo's verdicts to show: a revoked or counterfeit label first (the one
    that matters), else the first unreadable (a label not checked), else the best-scoring genuine."""
    for kind in SHOWN_FIRST:
        found = [i for i, v in enumerate(verdicts) if v.verdict == kind]
        if found:
            return max(found, key=lambda i: verdicts[i].score or 0.0) if kind == Kind.GENUINE else found[0]
    return 0


def plain_reason(verdict, updated: str | None = None) -> str:
    """What the inspector should know or do, in words, for a verdict: its reason (`SAID`) in
    the language in use. A counterfeit is a label that is not among the device's labels as
    of the day its bundle was `updated` (YYYY-MM-DD): all that is known, so that is what is said."""
    why = verdict.why
    return _(SAID[why.reason]).format(**why.params, date=updated or _("date unknown"))


_ABSENT = N_("Not among this device's labels (updated {date}): do not accept it.")
SAID = {  # every reason -> what the inspector should know or do; {names} are the reason's parameters
    Reason.MATCHES: N_("This label is enrolled as {label_id}."),
    # the cause in the factory's own words
    Reason.REVOKED: N_("Label {label_id} was revoked: do not accept it. Reason: {reason}"),
    Reason.REVOKED_UNLISTED: N_("Label {label_id} was revoked: do not accept it."),
    Reason.PATTERN_NOT_ENROLLED: N_("No label of this pattern on this device (updated {date}): do not accept it."),
    Reason.BELOW_THRESHOLD: _ABSENT,
    Reason.OTHER_PATTERN: _ABSENT,
    Reason.GLYPHS_DISAGREE: N_("The label's pattern could not be read for sure. Hold the device flat and steady "
                               "over the label, then take the photo again."),
    Reason.NO_LABEL: N_("No whole label in the photo. Put the label inside the guide box and take the photo "
                        "again."),
    Reason.WRONG_SIZE: N_("The label is about {found:.0f} px across, not the {label_px:.0f} px set. Set the label "
                          "size to auto in Settings, then take the photo again."),
    Reason.BLURRED: N_("The photo is blurred. Hold the device still until Focus shows Sharp, then take it again."),
    Reason.WASHED_OUT: N_("The photo is washed out. Shade the label from stray light and glare, then take it "
                          "again."),
    Reason.TOO_DARK: N_("The photo is too dark. Hold the device flat on the label, or raise the exposure in "
                        "Settings."),
    Reason.OVEREXPOSED: N_("The photo is too bright. Lower the exposure in Settings, then take it again."),
    Reason.NOT_CHECKED: N_("Too many labels in one photo: some were not checked. Photograph fewer labels at a "
                           "time."),
    Reason.BAD_IMAGE: N_("The photo cannot be read ({problem}). Take it again."),
}


def summarise(verdicts: list, shown: int) -> str:
    """How many labels of each verdict the photo holds, counterfeits first; "" for one label."""
    if len(verdicts) < 2:
        return ""
    counts = {kind: sum(v.verdict == kind for v in verdicts) for kind in SHOWN_FIRST}
    parts = ", ".join(f"{n} {_(KIND_WORDS[k])}" for k, n in counts.items() if n)
    return _("{count} labels in the photo ({parts}); showing the {kind} one").format(
        count=len(verdicts), parts=parts, kind=_(KIND_WORDS[verdicts[shown].verdict]))


def downscale(image: np.ndarray, width: int) -> np.ndarray:
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
        self.verifier: Verifier | None = None
        self.thumbnails: Thumbnails | None = None
        self.status = BundleStatus(None, problem=NOT_OPENED)
        self._journal = None

    @property
    def journal(self):
        """The device's journal, opened at the first check; its signing key (`edge_app.device_key`)
        is made with it, on the device's first start, so that its id can be registered centrally
        before any journal is exported."""
        if self._journal is None:
            self._journal = Journal(self.store.journal_path)
            try:
                device_key(self.store.journal_path)
            except PufError as error:  # checks still go on: only exporting the journal needs the key
                log.warning("the device key: %s", error)
        return self._journal

    def trusted_keys(self) -> Path:
        return self.trusted_override or self.store.trusted_keys_dir()

    def _keys(self) -> dict | Path | None:
        """The keys a bundle is checked against: the trusted-keys folder itself when it holds root
        keys (the root list then names them, `edge_app.trust_root`); None when the device trusts
        none yet (not set up: said in the inspector's words, `NOT_SET_UP`, not the command line's)."""
        try:
            if root_keys(self.trusted_keys()):
                return self.trusted_keys()
            return load_trusted_keys(self.trusted_keys())
        except NoTrustedKeys as error:
            log.warning("%s", error)
            return None

    def label_px(self) -> float | None:
        """The label side set in Settings (px), or None: found in each photo. A stored value
        that is not a usable size (a hand-edited file) counts as auto, and is logged."""
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
        self.verifier = self.thumbnails = None
        path = self.bundle_override or self.store.bundle_path()
        try:
            keys = self._keys()  # first: a device that trusts no key cannot use any bundle
            if keys is None:
                self.status = BundleStatus(path, problem=NOT_SET_UP)
                return self.status
            if path is None:
                self.status = BundleStatus(None, problem=N_("No bundle is installed: labels cannot be checked. "
                                                            "{hint}"))
                return self.status
            bundle = load_bundle(path, keys, root_list=self.store.root_list_path())
            verifier = open_verifier(bundle, self.label_px())
            self.thumbnails = Thumbnails.open(bundle.path)
            self.verifier = verifier
        except PufError as error:
            self.status = BundleStatus(path, problem=N_("The bundle cannot be used: {cause}. {hint}"), cause=str(error))
            return self.status
        except Exception as error:  # a damaged bundle must not stop the app: say so, keep the traceback in the log
            log.exception("opening the bundle %s failed", path)
            self.status = BundleStatus(path, problem=N_("The bundle cannot be used ({cause}). {hint}"),
                                       cause=f"{type(error).__name__}: {error}")
            return self.status
        self.status = BundleStatus(bundle.path, bundle_version(bundle), len(bundle.shards), bundle.signer,
                                   warning=bundle.uncalibrated_warning, release=bundle.release.describe())
        return self.status

    def install(self, folder: Path, allow_older: bool = False) -> BundleStatus:
        """Check and install the bundle in `folder` (a USB stick), then verify with it. A
        refused bundle raises PufError, and the current bundle stays in use; `allow_older`
        installs one whose sequence is not above the current one's (going back on purpose)."""
        keys = self._keys()
        if keys is None:
            raise PufError(_(NOT_SET_UP))
        self.store.install_bundle(Path(folder), keys, allow_older=allow_older)
        self.bundle_override = None
        return self.open()

    def inspect(self, frame) -> Outcome:
        """Verify a captured frame, record every label's verdict in the journal, and say
        which one to show."""
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
        return Outcome(kind=verdict.verdict, detail=verdict.reason, label_id=verdict.label_id, score=verdict.score,
                       threshold=verdict.threshold, pattern=verdict.pattern,
                       labels=sum(v.corners_px is not None for v in verdicts), verdicts=verdicts, shown=shown,
                       crop=crop, thumbnail=thumbnail, verify_ms=float(verdict.timings_ms.get("total", 0.0)),
                       entry_id=entries[shown], source=frame.source, updated=self.verifier.updated)

    def history(self, limit: int = 100) -> list:
        return self.journal.recent(limit)

    def crop(self, entry_id: int) -> np.ndarray | None:
        return self.journal.crop(entry_id)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
