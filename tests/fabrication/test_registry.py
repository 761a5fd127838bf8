"""The label registry: transactions, idempotent re-recording, enrolled labels kept."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from edge_app.errors import PufError
from edge_app.label_crop import Quality
from edge_app.layout import BatchLayout
from fabrication.registry import UNKNOWN_BUNDLE, FieldRecord, LabelRecord, Registry, RejectionRecord

LAYOUT = BatchLayout("R1", tuple("ABCD" * 6), label_cols=2, label_rows=2, field_cols=3,
                     field_rows=2)


def labels_of(field: int, status: str = "found") -> list[LabelRecord]:
    return [LabelRecord(LAYOUT.label_id(field, slot), "R1", field, slot, slot // 2, slot % 2,
                        status, LAYOUT.pattern_of(field, slot),
                        crop_path=f"crops/{LAYOUT.label_id(field, slot)}.png", sha256="ab" * 32,
                        quality=Quality(sharpness=0.5, exposure=180.0, clipped=0.0, border_contrast=0.8,
                                        skew_deg=0.3, aspect=1.01, size_ratio=1.0))
            for slot in range(4)]


@pytest.fixture
def registry(tmp_path):
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.upsert_batch(LAYOUT, "/data/R1")
        yield registry


def test_a_field_and_its_labels_are_recorded_and_read_back(registry: Registry) -> None:
    record = FieldRecord("R1", 2, "done", "field_0002.tif", "10:20", "ok", "fast", 4, 1)
    registry.record_field(record, labels_of(2), [RejectionRecord("edge", "cut", None, "[]")])
    assert registry.field("R1", 2) == record
    assert registry.labels("R1") == labels_of(2)
    assert registry.label("R1-0002-03") == labels_of(2)[3]
    assert registry.rejections("R1") == [(2, RejectionRecord("edge", "cut", None, "[]"))]
    assert registry.counts("R1") == {"fields": {"done": 1}, "labels": {"found": 4}}
    assert registry.batch_layout("R1") == LAYOUT
    assert registry.field("R1", 3) is None and registry.label("R1-0003-00") is None


def test_recording_a_field_again_replaces_it(registry: Registry) -> None:
    record = FieldRecord("R1", 0, "done", labels_found=4)
    registry.record_field(record, labels_of(0), [RejectionRecord("edge"), RejectionRecord("size")])
    registry.record_field(record, labels_of(0))  # the same again: nothing changes
    assert registry.labels("R1") == labels_of(0) and len(registry.rejections("R1")) == 0
    fewer = [replace(label, status="missing", crop_path=None) if label.slot == 1 else label
             for label in labels_of(0)]
    registry.record_field(replace(record, labels_found=3), fewer)
    assert registry.label("R1-0000-01").status == "missing"
    assert registry.field("R1", 0).labels_found == 3
    assert len(registry.labels("R1", status="found")) == 3


def test_enrolled_and_held_out_labels_keep_their_record(registry: Registry) -> None:
    registry.record_field(FieldRecord("R1", 1, "done"), labels_of(1))
    registry.record_enrolled("/bundles/a", ["R1-0001-00"])
    assert registry.set_status(["R1-0001-01"], "held_out") == 1
    assert registry.locked_labels("R1", 1) == {"R1-0001-00", "R1-0001-01"}
    changed = [replace(label, sha256="cd" * 32, status="rejected") for label in labels_of(1)]
    registry.record_field(FieldRecord("R1", 1, "done"), changed)
    assert registry.label("R1-0001-00").status == "enrolled"
    assert registry.label("R1-0001-00").sha256 == "ab" * 32
    assert registry.label("R1-0001-01").status == "held_out"
    assert registry.label("R1-0001-02").status == "rejected"
    with pytest.raises(PufError, match="status"):
        registry.set_status(["R1-0001-02"], "stolen")


def test_enrolled_is_a_fact_per_bundle(registry: Registry) -> None:
    """Enrolled into A says nothing of B; removed from A, a label B holds stays enrolled
    (its crop locked), and one no bundle holds is found again."""
    registry.record_field(FieldRecord("R1", 1, "done"), labels_of(1))
    registry.record_enrolled("/bundles/a", ["R1-0001-00", "R1-0001-01", "R1-0009-00"])  # no such label: passed over
    registry.record_enrolled("/bundles/b", ["R1-0001-00"])
    assert registry.enrolled_in("/bundles/a") == {"R1-0001-00", "R1-0001-01"}
    assert registry.enrolled_in("/bundles/b") == {"R1-0001-00"}
    assert registry.record_removed("/bundles/a", ["R1-0001-00", "R1-0001-01"]) == 2
    assert registry.enrolled_in("/bundles/a") == set()
    assert registry.label("R1-0001-00").status == "enrolled"  # B holds it
    assert registry.label("R1-0001-01").status == "found"
    assert registry.locked_labels("R1", 1) == {"R1-0001-00"}
    with pytest.raises(PufError, match="enrolled"):
        registry.set_status(["R1-0001-00"], "enrolled")
    with pytest.raises(PufError, match=r"1 of the labels are enrolled \(e.g. R1-0001-00 into /bundles/b\)"):
        registry.set_status(["R1-0001-01", "R1-0001-00"], "held_out")
    assert registry.label("R1-0001-01").status == "found"  # refused whole


def test_a_registry_of_schema_1_is_read_and_its_enrolled_labels_stay_enrolled(tmp_path) -> None:
    """A registry written before enrollment was recorded per bundle: its enrolled labels are
    enrolled into an unknown bundle (crops still locked), its held-out ones stay held out."""
    path = tmp_path / "old.sqlite"
    with Registry(path) as registry:
        registry.upsert_batch(LAYOUT, "/data/R1")
        registry.record_field(FieldRecord("R1", 0, "done"), labels_of(0))
    db = sqlite3.connect(path)  # as schema 1 left it: a status, no table of bundles
    with db:
        db.execute("DROP TABLE enrolled")
        db.execute("UPDATE meta SET value='1' WHERE key='schema'")
        db.execute("UPDATE labels SET status='enrolled' WHERE label_id='R1-0000-00'")
        db.execute("UPDATE labels SET status='held_out' WHERE label_id='R1-0000-01'")
    db.close()
    with Registry(path) as registry:
        assert registry.enrolled_in(UNKNOWN_BUNDLE) == {"R1-0000-00"}
        assert registry.label("R1-0000-00").status == "enrolled"
        assert registry.label("R1-0000-01").status == "held_out"
        assert registry.locked_labels("R1", 0) == {"R1-0000-00", "R1-0000-01"}
        registry.record_enrolled("/bundles/a", ["R1-0000-00"])  # enrolled into its bundle again: now known
        assert registry.enrolled_in("/bundles/a") == {"R1-0000-00"}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)


def test_a_failed_write_leaves_the_old_record(registry: Registry) -> None:
    registry.record_field(FieldRecord("R1", 4, "done", labels_found=4), labels_of(4))

    def rejections():
        yield RejectionRecord("edge")
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.record_field(FieldRecord("R1", 4, "failed"), labels_of(4, "missing"), rejections())
    assert registry.field("R1", 4).status == "done"
    assert registry.labels("R1", field=4) == labels_of(4)
    assert registry.rejections("R1", 4) == []
    with pytest.raises(ValueError, match="status"):
        registry.record_field(FieldRecord("R1", 4, "exploded"))


def test_the_file_is_shared_safely(tmp_path, registry: Registry) -> None:
    assert registry._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    registry.record_field(FieldRecord("R1", 5, "done"), labels_of(5))
    with Registry(registry.path) as other:  # a second connection sees the committed field
        assert len(other.labels("R1", field=5)) == 4
        other.upsert_batch(LAYOUT, "/elsewhere/R1")  # the same batch again is fine
    other_layout = replace(LAYOUT, pitch_um=300.0)
    with pytest.raises(PufError, match="another layout"):
        registry.upsert_batch(other_layout)


def test_files_that_are_not_registries_are_refused_in_words(tmp_path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(PufError, match="cannot open the registry"):
        Registry(junk)
    newer = tmp_path / "newer.sqlite"
    Registry(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(PufError, match="schema 99"):
        Registry(newer)
