"""`puf enroll` and `puf evaluate` open their bundle through `edge_app.bundle.open_bundle`:
manifest.json read from disk and parsed into a `Manifest` a counted number of times, not once
per question asked of it (issue 26, item 8: evaluate read it 8 times, enroll 6)."""

import json
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.bundle_format import MANIFEST, Manifest
from edge_app.cli import main
from tests.bundle_support import enroll_crops, keys, sim_batch, write_crop_folder


@pytest.fixture
def counted(monkeypatch) -> dict[str, int]:
    """How often manifest.json is read from disk, and how often a dict becomes a `Manifest`."""
    counts = {"reads": 0, "parses": 0}
    read_text, parse = Path.read_text, Manifest.from_dict.__func__

    def counting_read(self, *args, **kwargs):
        counts["reads"] += self.name == MANIFEST
        return read_text(self, *args, **kwargs)

    def counting_parse(cls, *args, **kwargs):
        counts["parses"] += 1
        return parse(cls, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read)
    monkeypatch.setattr(Manifest, "from_dict", classmethod(counting_parse))
    return counts


def test_enroll_then_evaluate_read_the_manifest_once_each_and_once_more_to_write(base, fresh, tmp_path, counted,
                                                                                capsys):
    key = str(keys(base)[0])
    assert main(["enroll", "--bundle", str(fresh), "--labels", str(enroll_crops(base)), "--key", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels_added"] == 12
    # read once, under the lock, for the enrollment and the new version built on it (main: twice,
    # each parsed twice); the new manifest parsed twice more (checked before it is signed, and as signed)
    assert counted == {"reads": 1, "parses": 3}, counted
    counted.update(reads=0, parses=0)
    queries = write_crop_folder(tmp_path / "queries", sim_batch(), (0, 1), shots=0, handheld=1)
    assert main(["evaluate", "--bundle", str(fresh), "--queries", str(queries), "--no-classify",
                 "--query-far", "0.05", "--frr-bound", "0.25", "--key", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"]
    # read to score against, and again under the lock to write the threshold (an enrollment may
    # have made a new version meanwhile); main: 3 reads, 8 parses
    assert counted == {"reads": 2, "parses": 4}, counted
    threshold = json.loads((fresh / MANIFEST).read_text())["decision"]["threshold"]
    counted.update(reads=0, parses=0)
    assert load_bundle(fresh, keys(base)[1]).threshold == threshold
    assert counted == {"reads": 1, "parses": 1}, counted  # the device's load: one read, one parse (main: two)
