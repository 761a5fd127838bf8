"""Holding labels out and undoing an enrollment, through the command line only (issue 23
items 10 and 11): `puf hold-out` keeps a calibration field out of every bundle, "enrolled"
is recorded per bundle, and `puf unenroll` takes a batch enrolled by mistake out of a bundle
as a new signed version that a device installs, while an unsigned or older one never
installs."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import main
from edge_app.folder_swap import home_of
from fabrication.registry import FieldRecord, LabelRecord, Registry
from tests.bundle_support import keys, model_bundle, sim_batch, write_crop_folder

V2 = ("V2", 6)  # another batch, on another film
V1_IDS = {sim_batch().layout.label_id(0, s) for s in range(12)}
V2_IDS = {sim_batch(*V2).layout.label_id(0, s) for s in range(12)}
HELD_IDS = {sim_batch().layout.label_id(1, s) for s in range(12)}


def registry_of(root: Path, batches: dict) -> Path:
    """root/registry.sqlite as `puf segment` leaves it: every label of the given fields of
    each batch found, its microscope crop under root/BATCH."""
    path = root / "registry.sqlite"
    with Registry(path) as registry:
        for batch, fields in batches.items():
            layout = batch.layout
            folder = write_crop_folder(root / layout.batch_id, batch, fields)
            registry.upsert_batch(layout, str(folder))
            for field in fields:
                labels = [LabelRecord(layout.label_id(field, slot), layout.batch_id, field, slot,
                                      *divmod(slot, layout.field_cols), "found", layout.pattern_of(field, slot),
                                      crop_path=f"crops/{layout.label_id(field, slot)}/m0.png")
                          for slot in range(layout.labels_per_field)]
                registry.record_field(FieldRecord(layout.batch_id, field, "done"), labels)
    return path


def puf(*argv, status: int = 0) -> dict | str:
    """`puf ARGV --json`: its JSON report, or (a refusal) what it printed on stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main([*map(str, argv), "--json"]) == status, err.getvalue()
    return json.loads(out.getvalue()) if status == 0 else err.getvalue()


def verify(root: Path, batch, slots: range, seed: int) -> list[tuple[str, str | None]]:
    """(verdict, label) of a handheld photo of each slot of field 0, on the installed bundle."""
    photos = []
    for slot in slots:
        image, _ = batch.handheld(0, slot, seed)
        photos.append(root / f"{batch.layout.batch_id}_{slot}_{seed}.png")
        cv2.imwrite(str(photos[-1]), image)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["verify", *map(str, photos), "--json"])
    return [(v["verdict"], v.get("label_id")) for v in json.loads(out.getvalue())["verdicts"]]


@pytest.fixture(scope="module")
def line(base, tmp_path_factory):
    """The factory's steps through `puf`: hold field 1 of V1 out, enroll everything else into
    bundle A and batch V1 alone into bundle B, then take V1 out of A; and a device that
    installs A's versions. Each step's report, by name."""
    root = tmp_path_factory.mktemp("unenroll")
    key, trusted = keys(base)
    registry = registry_of(root, {sim_batch(): (0, 1), sim_batch(*V2): (0,)})
    a, b = (Path(shutil.copytree(model_bundle(base), root / name)) for name in ("A", "B"))
    v1, v2 = sim_batch(), sim_batch(*V2)
    out: dict = {"registry": registry, "a": a, "b": b}

    def facts(name: str) -> None:
        with Registry(registry) as opened:
            out[name] = {"A": opened.enrolled_in(str(home_of(a))), "B": opened.enrolled_in(str(home_of(b))),
                         "status": {lb.label_id: lb.status for lb in opened.labels()}}

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUF_HOME", str(root / "device"))
        patch.setenv("XDG_CONFIG_HOME", str(root / "config"))
        out["held"] = puf("hold-out", registry, "--batch", "V1", "--field", "1")
        out["into_a"] = puf("enroll", "--bundle", a, "--labels", registry, "--key", key)
        out["into_b"] = puf("enroll", "--bundle", b, "--labels", registry, "--batch", "V1", "--key", key)
        facts("enrolled")
        out["hold_enrolled"] = puf("hold-out", registry, "--batch", "V2", status=2)
        shutil.copytree(a, root / "A_before")  # the version devices hold
        out["before"] = json.loads((a / "manifest.json").read_text())
        out["unenroll"] = puf("unenroll", "--bundle", a, "--batch", "V1", "--registry", registry, "--key", key)
        out["after"] = json.loads((a / "manifest.json").read_text())
        facts("removed")
        out["again"] = puf("unenroll", "--bundle", a, "--batch", "V1", "--key", key, status=2)
        unsigned = Path(shutil.copytree(root / "A_before", root / "A_unsigned"))
        puf("unenroll", "--bundle", unsigned, "--batch", "V1")  # no --key: nobody signs it

        puf("device", "trust", trusted / "factory.pub")
        puf("device", "install", root / "A_before")
        out["v1_before"] = verify(root, v1, range(4), 3)
        puf("device", "install", a)
        out["v1_after"] = verify(root, v1, range(12), 4)
        out["v2_after"] = verify(root, v2, range(12), 5)
        out["older"] = puf("device", "install", root / "A_before", status=2)
        out["unsigned"] = puf("device", "install", unsigned, status=2)
        out["v2_still"] = verify(root, v2, range(2), 6)
    return out


def test_held_out_labels_are_enrolled_into_no_bundle_and_each_bundle_has_its_own(line):
    assert (line["held"]["changed"], line["held"]["held_out"]) == (12, 12)
    assert line["into_a"]["labels_added"] == 24 and line["into_a"]["skipped"] == {"held out": 12}
    assert line["into_b"]["labels_added"] == 12  # enrolled into A says nothing of B
    facts = line["enrolled"]
    assert facts["A"] == V1_IDS | V2_IDS and facts["B"] == V1_IDS
    assert {facts["status"][i] for i in HELD_IDS} == {"held_out"}


def test_an_enrolled_label_is_never_held_out(line):
    refused = line["hold_enrolled"]
    assert "puf hold-out: error: 12 of the labels are enrolled" in refused and "puf unenroll" in refused
    assert {line["enrolled"]["status"][i] for i in V2_IDS} == {"enrolled"}
    assert {line["removed"]["status"][i] for i in V2_IDS} == {"enrolled"}


def test_a_batch_enrolled_by_mistake_is_taken_out_as_a_new_signed_version(line):
    report, before, after, a = line["unenroll"], line["before"], line["after"], line["a"]
    assert report["labels_removed"] == 12 and report["labels_total"] == after["shards"]["labels"] == 12
    assert after["sequence"] == before["sequence"] + 1 == report["sequence"] and report["signed_by"]
    ids = {i for e in after["shards"]["classes"].values() for i in np.load(a / e["ids"]).astype(str)}
    assert ids == V2_IDS
    facts = line["removed"]
    assert facts["A"] == V2_IDS and facts["B"] == V1_IDS  # still in B: still enrolled
    assert {facts["status"][i] for i in V1_IDS} == {"enrolled"}
    assert "holds no label of batch V1" in line["again"]  # nothing of V1 left in A, nothing signed


def test_a_device_installs_the_new_version_only_and_the_removed_batch_no_longer_verifies(line):
    assert {v for v, _ in line["v1_before"]} == {"genuine"}  # before the undo
    assert all(v != "genuine" for v, _ in line["v1_after"])
    v2 = sim_batch(*V2).layout
    assert line["v2_after"] == [("genuine", v2.label_id(0, s)) for s in range(12)]
    assert "sequence" in line["older"], line["older"]
    assert "sign" in line["unsigned"], line["unsigned"]
    assert line["v2_still"] == [("genuine", v2.label_id(0, s)) for s in range(2)]  # the refusals changed nothing


@pytest.fixture
def small(base, tmp_path):
    """A registry holding field 0 of V1, and a bundle with those labels enrolled."""
    registry = registry_of(tmp_path, {sim_batch(): (0,)})
    bundle = Path(shutil.copytree(model_bundle(base), tmp_path / "bundle"))
    return registry, bundle


@pytest.mark.parametrize(("argv", "words"), [
    (["--field", "0"], "--field N needs --batch"),
    ([], "name the labels"),
    (["--batch", "V9"], "holds no batch 'V9'"),
    (["--batch", "V1", "--field", "5"], "no label of field 5 of batch V1"),
    (["--batch", "../V1"], "batch id '../V1' is not allowed"),
    (["--label", "V1-0000-99"], "holds no label V1-0000-99"),
])
def test_hold_out_refuses_what_it_cannot_name_and_marks_nothing(small, argv, words):
    registry, _ = small
    refused = puf("hold-out", registry, *argv, status=2)
    assert "puf hold-out: error: " in refused and words in refused, refused
    with Registry(registry) as opened:
        assert {lb.status for lb in opened.labels()} == {"found"}


def test_held_out_labels_are_not_trained_on_until_released(small):
    from trainer.data import RegistryDataset

    registry, _ = small
    held = {"V1-0000-00", "V1-0000-07"}
    puf("hold-out", registry, *(f"--label={label}" for label in sorted(held)))
    assert set(RegistryDataset(registry).labels(held_out=False)) == V1_IDS - held  # what puf train takes
    released = puf("hold-out", registry, "--batch", "V1", "--release")
    assert released["changed"] == 2 and released["held_out"] == 0
    assert set(RegistryDataset(registry).labels(held_out=False)) == V1_IDS


def test_unenroll_never_signs_over_a_bundle_another_key_signed_nor_names_nothing(small, base, tmp_path):
    registry, bundle = small
    puf("enroll", "--bundle", bundle, "--labels", registry, "--key", keys(base)[0])
    before = (bundle / "manifest.json").read_bytes()
    puf("keygen", tmp_path / "keys" / "other")
    refused = puf("unenroll", "--bundle", bundle, "--batch", "V1", "--key", tmp_path / "keys" / "other.key", status=2)
    assert "puf unenroll: error:" in refused and "sign" in refused, refused
    assert "name what to remove" in puf("unenroll", "--bundle", bundle, status=2)
    assert "not allowed" in puf("unenroll", "--bundle", bundle, "--label", "V1/../x", status=2)
    assert "holds no label of batch V7" in puf("unenroll", "--bundle", bundle, "--batch", "V7", status=2)
    assert "holds none of the 1 label(s)" in puf("unenroll", "--bundle", bundle, "--label", "V7-0000-00", status=2)
    assert (bundle / "manifest.json").read_bytes() == before
    with Registry(registry) as opened:
        assert opened.enrolled_in(str(home_of(bundle))) == V1_IDS


def test_an_unenroll_cut_off_before_its_registry_record_converges_on_a_rerun(small, base):
    registry, bundle = small
    key = keys(base)[0]
    puf("enroll", "--bundle", bundle, "--labels", registry, "--key", key)
    first = puf("unenroll", "--bundle", bundle, "--batch", "V1", "--key", key)  # as if cut before the record
    assert first["labels_removed"] == 12 and first["labels_total"] == 0
    with Registry(registry) as opened:
        assert opened.enrolled_in(str(home_of(bundle))) == V1_IDS
    again = puf("unenroll", "--bundle", bundle, "--batch", "V1", "--registry", registry, "--key", key)
    assert again["labels_removed"] == 0 and again["sequence"] == first["sequence"]  # nothing signed twice
    with Registry(registry) as opened:
        assert opened.enrolled_in(str(home_of(bundle))) == set()
        assert {lb.status for lb in opened.labels()} == {"found"}
    assert puf("enroll", "--bundle", bundle, "--labels", registry, "--key", key)["labels_added"] == 12
