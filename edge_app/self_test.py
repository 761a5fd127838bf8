"""`puf verify --self-test`: this install checked end to end, with no checkout and no factory.

The package ships a small signed bundle (12 labels) and three handheld photos (`edge_app/selftest/`,
its README); the self-test verifies the photos with the installed libraries (OpenCV, LiteRT,
Faiss, cryptography), through the same pipeline as `puf verify`, and compares each verdict with the
one the photo's name records (``NNNN_genuine_LABELID.jpg``: genuine, as that label; any other kind:
counterfeit). The self-test's key is trusted for its own run only, held in memory: it is never
added to the device's trusted keys, so nothing signed with it can be installed on the device (its
private half was thrown away when the bundle was signed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_app.bundle import load_bundle
from edge_app.errors import PufError
from edge_app.segment import load_image
from edge_app.signing import load_trusted_keys
from edge_app.verify import Verdict, Verifier

SELFTEST = Path(__file__).with_name("selftest")


@dataclass(frozen=True)
class Check:
    photo: str
    expected: str  # genuine | counterfeit
    label_id: str | None  # the label a genuine photo shows
    verdicts: list[Verdict]  # what this install gave

    @property
    def passed(self) -> bool:
        return [(v.verdict, v.label_id) for v in self.verdicts] == [(self.expected, self.label_id)]


def expected(photo: Path) -> tuple[str, str | None]:
    """What a self-test photo shows, from its name: (genuine, LABELID) or (counterfeit, None)."""
    parts = photo.stem.split("_")
    return ("genuine", parts[-1]) if parts[1] == "genuine" else ("counterfeit", None)


def self_test(folder: Path = SELFTEST) -> tuple[list[Check], Verifier]:
    """Verify the self-test's photos against its bundle, trusting its key alone, for this run."""
    photos = sorted((folder / "photos").glob("*.jpg"))
    if not photos or not (folder / "bundle").is_dir():
        raise PufError(f"the self-test's bundle and photos are missing from {folder}: reinstall puf-labels")
    bundle = load_bundle(folder / "bundle", load_trusted_keys(folder / "trusted_keys"))
    verifier = Verifier(bundle)
    checks = [Check(photo.name, *expected(photo), verifier.verify_image(load_image(photo), photo.name))
              for photo in photos]
    return checks, verifier
