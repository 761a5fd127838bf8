"""Verdict kinds and the reasons behind them, as typed values.

A verdict's reason is a `Reason` (a code that never changes, stored and printed as
``reason_code``) with its parameters (the figures measured), a `Why`. Text is made from it
where it is shown, once per language: the English sentence here (`Why.text`: what
`puf verify` prints and the journal stores), the inspector's words in the app
(`edge_app.app.inspection.SAID`, translated into every language the app has). Nothing
maps a sentence back to its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from string import Formatter
from types import MappingProxyType
from typing import Any


class Kind(StrEnum):
    """What a verdict says of a label."""

    GENUINE = "genuine"
    COUNTERFEIT = "counterfeit"
    REVOKED = "revoked"
    UNREADABLE = "unreadable"  # retake the photo


# what a counterfeit verdict knows: the label is not among the bundle's labels as of its date
_ABSENT = "not in this bundle's labels (updated {updated}): "


class Reason(StrEnum):
    """Why a verdict is what it is: the code (its value), the kind of verdict it gives, and
    the English sentence it is said in, its parameters named in braces."""

    kind: Kind
    english: str

    def __new__(cls, code: str, kind: Kind, english: str) -> Reason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.kind = kind
        member.english = english
        return member

    MATCHES = "matches", Kind.GENUINE, "matches {label_id}"
    REVOKED = "revoked", Kind.REVOKED, "{label_id} revoked on {time}: {reason}"
    REVOKED_UNLISTED = "revoked_unlisted", Kind.REVOKED, "{label_id} revoked"  # no entry in the list says when
    PATTERN_NOT_ENROLLED = ("pattern_not_enrolled", Kind.COUNTERFEIT,
                            _ABSENT + "none of pattern {pattern} is enrolled")
    BELOW_THRESHOLD = ("below_threshold", Kind.COUNTERFEIT,
                       _ABSENT + "best match scores {score:.3f} < threshold {threshold:.3f}")
    OTHER_PATTERN = ("other_pattern", Kind.COUNTERFEIT,
                     _ABSENT + "the closest label is of pattern {pattern}, but the glyph reads {allowed}")
    GLYPHS_DISAGREE = ("glyphs_disagree", Kind.UNREADABLE,
                       "the glyph's two readings disagree (the pattern model reads {pattern} {confidence:.2f}, "
                       "the glyph template {glyph}): retake the photo")
    # notes: segmentation's own, each after "; ", and how many labels the photo's edge cut
    NO_LABEL = "no_label", Kind.UNREADABLE, "no label found{notes}: retake the photo with the whole label in view"
    WRONG_SIZE = ("wrong_size", Kind.UNREADABLE,
                  "no label found{notes}: the label is about {found:.0f} px across, not the {label_px:.0f} px "
                  "+- {tolerance:.0%} set; set the label size to auto or {found:.0f} px")
    BLURRED = ("blurred", Kind.UNREADABLE,
               "out of focus or blurred (sharpness {sharpness:.2f} < {limit}): retake the photo")
    WASHED_OUT = ("washed_out", Kind.UNREADABLE,
                  "washed out (border contrast {contrast:.2f} < {limit}): retake without stray light or glare")
    TOO_DARK = "too_dark", Kind.UNREADABLE, "too dark (film level {level:.0f} < {limit:.0f}): retake with more light"
    OVEREXPOSED = ("overexposed", Kind.UNREADABLE,
                   "overexposed ({clipped:.0%} of pixels saturated): retake with less light")
    NOT_CHECKED = ("not_checked", Kind.UNREADABLE,
                   "not checked: {unchecked} of the {labels} labels in the photo lie beyond the {limit} verified "
                   "per photo; photograph fewer labels at a time")
    BAD_IMAGE = "bad_image", Kind.UNREADABLE, "{problem}"  # the file is not a photo the device can read

    @property
    def params(self) -> frozenset[str]:
        """The names of the parameters its sentence takes."""
        return frozenset(name for _, name, _, _ in Formatter().parse(self.english) if name)

    def of(self, **params: Any) -> Why:
        """This reason with its parameters: exactly the ones its sentence names."""
        if set(params) != self.params:
            raise TypeError(f"reason {self.value} takes {sorted(self.params)}, not {sorted(params)}")
        return Why(self, MappingProxyType(dict(params)))


@dataclass(frozen=True)
class Why:
    """A reason and its parameters: what a verdict says, in no language yet."""

    reason: Reason
    params: MappingProxyType[str, Any]

    @property
    def text(self) -> str:
        """The reason in English, as `puf verify` prints it and the journal keeps it."""
        return self.reason.english.format(**self.params)
