"""Which pattern set a data set, a training run, a bundle or a registry batch carries.

The set travels as data (`edge_app.pattern_set`): a batch's layout holds it (and so its
registry row), a folder data set and a training run keep it as ``patterns.json``, and a
bundle lists it among its signed files. Things made before sets were data carry none and
mean the built-in set. A model knows a batch's glyphs when every one of them is in the
model's set stroke for stroke; `check_model_knows` refuses the others in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.errors import PufError
from edge_app.pattern_set import PATTERN_SET_FILE, PatternSet
from fabrication.patterns import builtin_pattern_set

if TYPE_CHECKING:
    from edge_app.bundle_format import Manifest


def builtin() -> PatternSet:
    return builtin_pattern_set()


def folder_pattern_set(folder: Path) -> PatternSet:
    """A folder data set's or a run's set: FOLDER/patterns.json, else the built-in one."""
    path = Path(folder) / PATTERN_SET_FILE
    return PatternSet.load(path) if path.exists() else builtin()


def bundle_pattern_set(bundle: Path, manifest: Manifest) -> PatternSet:
    """A bundle's set: its listed patterns.json, else the built-in one when its classes are
    the built-in names (bundles made before sets were data)."""
    if PATTERN_SET_FILE in manifest.file_entries:
        return PatternSet.load(Path(bundle) / PATTERN_SET_FILE)
    classes = list(manifest.pattern_classes or [])
    if classes == builtin().names:
        return builtin()
    raise PufError(f"the bundle {bundle} names {len(classes)} pattern classes but carries no {PATTERN_SET_FILE}: "
                   "export it again from its training run")


def batch_pattern_set(layout) -> PatternSet | None:
    """A registry batch's set; None for a folder of images whose patterns are not known."""
    if layout.pattern_set is not None:
        return layout.pattern_set
    return None if set(layout.patterns) == {"unknown"} else builtin()


def merged(sets: list[PatternSet], what: str) -> PatternSet:
    """One set holding the glyphs of several batches' sets (subsets of one source, say);
    PufError when two give one name to different strokes."""
    if not sets:
        raise PufError(f"{what} names no pattern set")
    glyphs: dict[str, tuple] = {}
    for pattern_set in sets:
        for name, strokes in pattern_set.glyphs:
            if glyphs.setdefault(name, strokes) != strokes:
                raise PufError(f"{what}: two pattern sets give the glyph name {name!r} to different strokes; "
                               "train on batches of one set")
    return PatternSet(sets[0].name, tuple(glyphs.items()))


def check_model_knows(model_set: PatternSet, batch_set: PatternSet, what: str) -> None:
    """Refuse `what` (a batch, a data set) whose glyphs the model's set does not hold."""
    unknown = model_set.unknown_glyphs(batch_set)
    if unknown:
        raise PufError(
            f"{what} uses pattern set {batch_set.name!r}, whose glyphs {', '.join(unknown[:6])}"
            f"{' ...' if len(unknown) > 6 else ''} the model (trained on set {model_set.name!r}) does not know: "
            "train or fine-tune a model on this set (puf train --init ...) and export it")
