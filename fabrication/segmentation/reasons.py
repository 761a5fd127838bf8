"""Why a label of a field has no crop, in words: the registry's reason column, `puf segment`'s
summary and the overlay say it alike."""

from __future__ import annotations

from edge_app.segment import REASONS

# why a label has no crop, besides segmentation's own reasons (edge_app.segment.REASONS)
FIELD_REASONS = {
    "neighbour": "a neighbouring field's label",
    "off-lattice": "off the label lattice",
    "ambiguous": "field position ambiguous",
    "not found": "not found",
    "unreadable": "field image unreadable",
    "failed": "field failed",
    # why a label found has no pattern from its glyph (a plain folder's labels)
    "glyph unmatched": "its glyph matches none of the pattern set's glyphs",
    "glyph turned": "its glyph reads turned from the field's labels",
}


def reason_text(code: str | None) -> str:
    return REASONS.get(code or "", FIELD_REASONS.get(code or "", code or "unknown"))
