"""The central registry on a real PostgreSQL server (and, through the same code, SQLite):
two factories' batches pushed side by side, a re-push changing nothing, devices' journals
imported once, clone alerts raised, and hostile journal files refused with nothing kept."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from edge_app.device_key import key_paths
from edge_app.errors import PufError
from edge_app.journal import CSV_COLUMNS, Journal
from edge_app.journal_sync import export_new
from edge_app.label_crop import Quality
from edge_app.layout import BatchLayout
from fabrication import verb_registry
from fabrication.central import TABLES, CentralRegistry
from fabrication.registry import FieldRecord, LabelRecord, Registry, RejectionRecord
from tests.journal_support import check, register, set_time

BERLIN, BERLIN_EAST, MUNICH = (52.52, 13.40), (52.51, 13.45), (48.14, 11.58)
L1, L2, L3, L9 = (f"L{n}-0000-00" for n in (1, 2, 3, 9))  # label ids, as a layout writes them


def factory(path, batch_id: str, fields: int = 2) -> None:
    """A factory's registry holding one batch of 2x2-label fields, segmented."""
    layout = BatchLayout(batch_id, tuple("ABCD" * fields), label_cols=2, label_rows=2, field_cols=fields,
                         field_rows=1)
    with Registry(path) as registry:
        registry.upsert_batch(layout, f"/data/{batch_id}")
        for field in range(fields):
            labels = [LabelRecord(layout.label_id(field, slot), batch_id, field, slot, slot // 2, slot % 2, "found",
                                  layout.pattern_of(field, slot), crop_path=f"crops/{field}-{slot}.png",
                                  sha256="ab" * 32,
                                  quality=Quality(sharpness=0.1 + slot / 3, exposure=180.0, clipped=0.0,
                                                  border_contrast=1 / 3, skew_deg=0.3, aspect=1.01, size_ratio=1.0))
                      for slot in range(4)]
            registry.record_field(FieldRecord(batch_id, field, "done", f"f{field}.tif", labels_found=4,
                                              elapsed_ms=3.14159), labels, [RejectionRecord("edge", "cut")])


def central_labels(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    with engine.connect() as db:
        labels = TABLES.tables["labels"]
        rows = [dict(row._mapping) for row in db.execute(sa.select(labels).order_by(labels.c.label_id))]
    engine.dispose()
    return rows


def test_two_factories_push_side_by_side_and_a_re_push_changes_nothing(url, tmp_path):
    factory(tmp_path / "a.sqlite", "A1")
    factory(tmp_path / "a.sqlite", "A2")
    factory(tmp_path / "b.sqlite", "B1", fields=3)
    with CentralRegistry(url) as central:
        first = central.push(tmp_path / "a.sqlite", "augsburg")
        assert first == {"batches": 2, "labels": 16, "new": 2 + 4 + 16 + 4, "changed": 0, "removed": 0}
        assert central.push(tmp_path / "b.sqlite", "bremen")["labels"] == 12
        for name in ("a", "b"):
            again = central.push(tmp_path / f"{name}.sqlite", "augsburg" if name == "a" else "bremen")
            assert (again["new"], again["changed"], again["removed"]) == (0, 0, 0)
    with Registry(tmp_path / "a.sqlite") as a, Registry(tmp_path / "b.sqlite") as b:
        local = sorted(a.labels() + b.labels(), key=lambda label: label.label_id)
    assert [LabelRecord.from_row(row) for row in central_labels(url)] == local  # floats and all, exactly

    # The factory moves on: labels enrolled, a field segmented again with one label fewer.
    with Registry(tmp_path / "a.sqlite") as a:
        a.record_enrolled("/bundles/b1", ["A1-0000-00", "A1-0000-01"])
        kept = [replace(label, status="found") for label in a.labels("A1", field=1)[:3]]
        a.record_field(FieldRecord("A1", 1, "done", labels_found=3), kept)
    with CentralRegistry(url) as central:
        moved = central.push(tmp_path / "a.sqlite", "augsburg")
        # 2 labels and field 1 changed; a label and field 1's rejection removed
        assert (moved["new"], moved["changed"], moved["removed"]) == (0, 3, 2)
        assert central.push(tmp_path / "a.sqlite", "augsburg")["changed"] == 0
    rows = {row["label_id"]: row for row in central_labels(url)}
    assert rows["A1-0000-00"]["status"] == "enrolled" and "A1-0001-03" not in rows and len(rows) == 27


def test_a_batch_id_another_factory_pushed_is_refused(url, tmp_path):
    factory(tmp_path / "a.sqlite", "X1")
    factory(tmp_path / "b.sqlite", "X1", fields=3)
    with CentralRegistry(url) as central:
        central.push(tmp_path / "a.sqlite", "augsburg")
        with pytest.raises(PufError, match="pushed by the factory 'augsburg'; batch ids must be unique"):
            central.push(tmp_path / "b.sqlite", "bremen")
        with pytest.raises(PufError, match="another layout"):
            central.push(tmp_path / "b.sqlite", "augsburg")
        with pytest.raises(PufError, match="no registry at"):
            central.push(tmp_path / "missing.sqlite", "augsburg")
        (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, just bytes" * 10)
        with pytest.raises(PufError, match="junk.sqlite"):
            central.push(tmp_path / "junk.sqlite", "augsburg")
    assert len(central_labels(url)) == 8


def test_a_bad_url_or_an_unreachable_server_is_a_clear_error():
    with pytest.raises(PufError, match="not a database URL"):
        CentralRegistry("localhost:5432")
    with pytest.raises(PufError, match="runs on PostgreSQL"):
        CentralRegistry("mysql://u@h/db")
    with pytest.raises(PufError, match=r"postgresql\+psycopg://puf:\*\*\*@127.0.0.1:1/x.*making its tables failed"):
        CentralRegistry("postgresql+psycopg://puf:secret@127.0.0.1:1/x")


def device(tmp_path, name: str, labels: list[str]) -> Journal:
    journal = Journal(tmp_path / f"{name}.sqlite")
    for label in labels:
        journal.record(check(label), None, "1-ab")
    journal.record(check(None, "counterfeit"), None, "1-ab")
    return journal


def test_journals_come_home_once_and_raise_clone_alerts(url, tmp_path):
    stick = tmp_path / "usb"
    stick.mkdir()
    devices = {"berlin": (BERLIN, [L1, L2, L1, L1]),  # L1 also in Munich: a clone
               "berlin_east": (BERLIN_EAST, [L2]),         # L2 twice, 4 km apart: no alert
               "munich": (MUNICH, [L1, L3])}
    ids = {}
    for name, (_, labels) in devices.items():
        with device(tmp_path, name, labels) as journal:
            ids[name] = journal.device_id
            export_new(journal, stick)
    with CentralRegistry(url) as central:
        for name, (place, _) in devices.items():
            central.set_device(ids[name], name, *place)
            with Journal(tmp_path / f"{name}.sqlite") as journal:
                register(central, journal)
        files = sorted(stick.iterdir())
        assert [central.import_journal(path) for path in files] == \
            [(len(devices[name][1]) + 1, 0) for name in sorted(devices, key=ids.get)]
        alerts = central.alerts(window_hours=24, min_km=50, max_checks=3)
        assert [(a.kind, a.label_id) for a in alerts] == [("two_places", L1), ("checked_often", L1)]
        assert set(alerts[0].devices) == {ids["berlin"], ids["munich"]} and 495 < alerts[0].distance_km < 510
        assert alerts[1].checks == 4
        assert [central.import_journal(path)[0] for path in files] == [0, 0, 0]  # again: nothing new
        assert central.alerts(window_hours=24, min_km=50, max_checks=3) == alerts
        assert central.alerts(window_hours=24, min_km=600, max_checks=10) == []

        # Munich's check of L9 comes three days after a Berlin one: outside the window.
        later = tmp_path / "later"
        later.mkdir()
        with Journal(tmp_path / "munich.sqlite") as journal:
            set_time(journal, journal.record(check(L9), None, "1-ab"), datetime.now(UTC) + timedelta(days=3))
            [(path, _)] = export_new(journal, later)
        assert central.import_journal(path) == (1, 0)
        with Journal(tmp_path / "berlin.sqlite") as journal:
            journal.record(check(L9), None, "1-ab")
            export_new(journal, later)
        assert central.import_journal(sorted(later.glob(f"*{ids['berlin']}*"))[0]) == (1, 0)
        assert [a.label_id for a in central.alerts(window_hours=24, min_km=50, max_checks=10)] == [L1]
        assert [a.label_id for a in central.alerts(window_hours=24 * 4, min_km=50, max_checks=10)] == [L1, L9]

        # A device of unknown place is not assumed near.
        central.set_device(ids["berlin_east"])
        assert {a.label_id for a in central.alerts(min_km=50, max_checks=10)} == {L1, L2}


def test_a_hostile_journal_file_is_refused_and_nothing_is_kept(url, tmp_path):
    stick = tmp_path / "usb"
    stick.mkdir()
    with device(tmp_path, "d", [L1, L2]) as journal:
        [(path, _)] = export_new(journal, stick)
    data = json.loads(path.read_text())
    data["entries"][2][4] = "0.9; DROP TABLE verifications"  # the last row bad: the good ones stay out too
    path.write_text(json.dumps(data))
    with CentralRegistry(url) as central:
        with pytest.raises(PufError, match="entry 2: score must be a finite number.*refused, nothing imported"):
            central.import_journal(path)
        huge = stick / "huge.json"
        with huge.open("wb") as f:
            f.truncate(65 * 1024 * 1024)
        with pytest.raises(PufError, match="more than a journal sync file can be"):
            central.import_journal(huge)
        assert central.alerts(max_checks=0 + 1) == []
    engine = sa.create_engine(url)
    with engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(TABLES.tables["verifications"])).scalar() == 0
        assert db.execute(sa.select(sa.func.count()).select_from(TABLES.tables["devices"])).scalar() == 0
    engine.dispose()


def puf_registry(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    verb_registry.add_arguments(parser)
    return verb_registry.run(parser.parse_args(argv))


def test_puf_registry_pushes_imports_and_reports(postgres_url, tmp_path, capsys, monkeypatch):
    factory(tmp_path / "a.sqlite", "A1")
    stick = tmp_path / "usb"
    stick.mkdir()
    devices = {}
    for name in ("one", "two"):
        with device(tmp_path, name, ["A1-0000-00"]) as journal:
            export_new(journal, stick)
            devices[journal.device_id] = key_paths(journal.path)[1]
    with pytest.raises(PufError, match="give the central registry's URL"):
        puf_registry("alerts")
    monkeypatch.setenv("PUF_CENTRAL", postgres_url)
    assert puf_registry("push", str(tmp_path / "a.sqlite"), "--factory", "augsburg") == 0
    assert "pushed 1 batches (8 labels) of augsburg: 13 rows new" in capsys.readouterr().out
    with pytest.raises(PufError, match="whose key is not registered: refused, nothing imported"):
        puf_registry("import", str(stick))
    for device_id, public in devices.items():
        assert puf_registry("add-device", device_id, str(public)) == 0
        assert f"registered device {device_id} with key " in capsys.readouterr().out
    assert puf_registry("add-device", device_id, str(public), "--json") == 0  # again: nothing changes
    assert json.loads(capsys.readouterr().out)["replaced"] is None
    assert puf_registry("import", str(stick)) == 0
    assert capsys.readouterr().out.count("2 new checks, 0 already here") == 2
    assert puf_registry("import", str(stick), "--json") == 0
    assert [r["known"] for r in json.loads(capsys.readouterr().out).values()] == [2, 2]
    assert puf_registry("alerts", "--json") == 0
    [alert] = json.loads(capsys.readouterr().out)
    assert alert["kind"] == "two_places" and alert["label_id"] == "A1-0000-00" and alert["distance_km"] is None
    device_id = alert["devices"][0]
    assert puf_registry("device", device_id, "--at", "52.5,13.4") == 0
    assert puf_registry("alerts") == 0
    assert "CLONE? A1-0000-00" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(PufError, match="--at must be LAT,LON"):
        puf_registry("device", device_id, "--at", "Berlin")
    with pytest.raises(PufError, match="a latitude in -90..90"):
        puf_registry("device", device_id, "--at", "152.5,13.4")
    with pytest.raises(PufError, match="no journal sync files"):
        puf_registry("import", str(tmp_path))


def test_a_device_online_pushes_what_is_new_and_a_failed_push_is_sent_again(url, tmp_path, monkeypatch, capsys):
    from edge_app.cli import main
    from edge_app.journal_sync import SYNCED_TO
    from tests.journal_support import crop, verdict

    monkeypatch.setenv("PUF_HOME", str(tmp_path / "home"))
    journal_path = tmp_path / "home" / "journal.sqlite"
    journal_given = ["--journal", str(journal_path)]  # the device's journal, imported on the factory side
    with Journal(journal_path) as journal:
        for i in range(3):
            journal.record(verdict(i), crop(i), "1-ab")
    assert main(["journal", "identity", "--json"]) == 0  # at provisioning: the device's id and key, registered
    identity = json.loads(capsys.readouterr().out)
    with CentralRegistry(url) as central:
        assert central.add_device(identity["device_id"], identity["public_key"]) == (identity["key_id"], None)
    # offline: a clear error, and the sync mark stays where it was
    offline = "postgresql+psycopg://puf:secret@127.0.0.1:1/x"
    assert main(["registry", "import", *journal_given, "--central", offline]) == 2
    assert "127.0.0.1:1" in capsys.readouterr().err
    with Journal(journal_path) as journal:
        assert not journal.meta(SYNCED_TO)
    assert main(["registry", "import", *journal_given, "--central", url]) == 0
    assert "pushed 3 new checks" in capsys.readouterr().out
    with Journal(journal_path) as journal:
        journal.record(verdict(3), None, "1-ab")
    monkeypatch.setenv("PUF_CENTRAL", url)
    assert main(["registry", "import", *journal_given]) == 0
    assert "pushed 1 new checks" in capsys.readouterr().out
    assert main(["registry", "import", *journal_given]) == 0
    assert "nothing new" in capsys.readouterr().out
    engine = sa.create_engine(url)
    with engine.connect() as db:
        checks = TABLES.tables["verifications"]
        assert db.execute(sa.select(checks.c.id).order_by(checks.c.id)).scalars().all() == [1, 2, 3, 4]
    engine.dispose()


def test_clone_alerts_come_from_the_database_one_row_each(postgres_url):
    """The pairing of checks within the window is the database's work (`_closest_pairs`): of
    each label's genuine checks on two devices, the closest two in time, the devices in the
    order they checked (at the same second, by device id), a gap of exactly the window
    included; what leaves the database is one row an alert and the devices, never the checks."""
    verifications = TABLES.tables["verifications"]
    checks = [("da", L1, "2026-11-02T08:00:00Z"), ("db", L1, "2026-11-02T09:00:00Z"),
              ("da", L1, "2026-11-02T09:30:00Z"),  # the closest: db then da, 30 minutes apart
              *[("da", L1, f"2026-11-0{day}T12:00:00Z") for day in range(3, 10)],  # more of L1, no nearer pair
              ("db", L2, "2026-11-02T08:00:00Z"), ("da", L2, "2026-11-02T08:00:00Z"),  # the same second
              ("da", L3, "2026-11-02T08:00:00Z"), ("dc", L3, "2026-11-03T08:00:00Z"),  # exactly 24 hours
              ("da", L9, "2026-11-02T08:00:00Z"), ("db", L9, "2026-11-03T08:00:01Z")]  # a second more
    with CentralRegistry(postgres_url) as central:
        for device_id in ("da", "db", "dc"):
            central.set_device(device_id)  # places unknown: every pair alerts
        with central.engine.begin() as db:
            db.execute(verifications.insert(), [
                {"device_id": device, "id": i, "time": when, "verdict": "genuine", "label_id": label, "threshold": 0.6,
                 "reason": "", "bundle_version": "1-ab", "source": "camera"}
                for i, (device, label, when) in enumerate(checks, start=1)])
        fetched = []
        sa.event.listen(central.engine, "after_cursor_execute",
                        lambda conn, cursor, statement, *_: fetched.append(cursor.rowcount))
        alerts = central.alerts(window_hours=24, min_km=50, max_checks=100)
    assert [(a.label_id, a.devices, a.first, a.last) for a in alerts] == [
        (L1, ("db", "da"), "2026-11-02T09:00:00Z", "2026-11-02T09:30:00Z"),
        (L2, ("da", "db"), "2026-11-02T08:00:00Z", "2026-11-02T08:00:00Z"),
        (L3, ("da", "dc"), "2026-11-02T08:00:00Z", "2026-11-03T08:00:00Z")]
    assert sum(n for n in fetched if n > 0) <= len(alerts) + 3  # the alerts' rows and the 3 devices


def test_a_journal_import_killed_at_any_moment_loses_and_repeats_nothing(url, tmp_path):
    """`puf registry import --journal` killed -9 at seeded moments within an uninterrupted run's
    time, then run to its end: every check reaches the central registry exactly once, and the
    device's sync mark ends at the last."""
    import os
    import shutil
    import subprocess

    from edge_app.journal_sync import SYNCED_TO
    from tests.faults import ROOT, kill_moments, puf_command, run_and_kill, timed_run
    from tests.journal_support import verdict

    env = {**os.environ, "PUF_HOME": str(tmp_path / "home")}
    journal_path, rows = tmp_path / "home" / "journal.sqlite", 6000
    with Journal(journal_path) as journal:
        for i in range(rows):
            journal.record(verdict(i), None, "1-ab")
    identity = subprocess.run(puf_command("journal", "identity", "--json"), cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True)
    device = json.loads(identity.stdout)
    trial_journal, trial_url = tmp_path / "home" / "trial.sqlite", f"sqlite:///{tmp_path / 'trial_central.sqlite'}"
    for made, copy in zip((journal_path, *key_paths(journal_path)), (trial_journal, *key_paths(trial_journal)),
                          strict=True):
        shutil.copy2(made, copy)  # the same device, signing with the same key
    for central_url in (url, trial_url):
        with CentralRegistry(central_url) as central:
            central.add_device(device["device_id"], device["public_key"])
    log = tmp_path / "kills.log"
    whole_s = timed_run(puf_command("registry", "import", "--journal", str(trial_journal), "--central", trial_url),
                        log, env)
    command = puf_command("registry", "import", "--journal", str(journal_path), "--central", url)
    ended = [run_and_kill(command, moment, log, env) for moment in kill_moments(26, 4, whole_s)]
    finish = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert None in ended  # at least one run was killed (each kill moment is within a whole run's time)
    engine = sa.create_engine(url)
    with engine.connect() as db:
        checks = TABLES.tables["verifications"]
        assert db.execute(sa.select(checks.c.id).order_by(checks.c.id)).scalars().all() == list(range(1, rows + 1))
    engine.dispose()
    with Journal(journal_path) as journal:
        assert int(journal.meta(SYNCED_TO)) == rows
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "nothing new" in again.stdout, again.stderr


def test_an_import_waits_out_another_of_the_same_checks_and_keeps_each_once_as_written(postgres_url, tmp_path):
    """Two imports of the same checks at once (a stick imported twice, a device online
    pushing while its stick is imported): the second waits for the first's transaction and
    then keeps only what is new, instead of failing; the checks' texts reach the database
    byte for byte (tabs, line breaks, backslashes, COPY's own \\N and \\. among them)."""
    import threading

    texts = ["tab\there", "line\nbreak\r\n", "back\\slash", "\\N", "\\.", "quote\"'", "ünïcode ✓", ""]
    stick = tmp_path / "usb"
    stick.mkdir()
    with Journal(tmp_path / "d.sqlite") as journal:
        for text in texts:
            journal.record(replace(check(L1), source=text), None, "1-ab")
        [(path, _)] = export_new(journal, stick)
        device_id = journal.device_id
    engine = sa.create_engine(postgres_url)
    checks = TABLES.tables["verifications"]
    with CentralRegistry(postgres_url) as central:
        with Journal(tmp_path / "d.sqlite") as journal:
            register(central, journal)
        first = json.loads(path.read_text())["entries"][0]
        other = engine.connect()
        other.begin()  # another import, not committed yet, holds the first check
        other.execute(checks.insert(), dict(zip(CSV_COLUMNS, first, strict=True)))
        blocker = other.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        result: list = []
        second = threading.Thread(target=lambda: result.append(central.import_journal(path)))
        second.start()
        waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE :blocker = ANY(pg_blocking_pids(pid))")
        with engine.connect() as watch:
            while second.is_alive() and not watch.execute(waiting, {"blocker": blocker}).scalar():
                second.join(0.05)
        other.commit()
        other.close()
        second.join()
        assert result == [(len(texts) - 1, 1)]
        assert central.import_journal(path) == (0, len(texts))
    with engine.connect() as db:
        held = db.execute(sa.select(checks.c.source).where(checks.c.device_id == device_id)
                          .order_by(checks.c.id)).scalars().all()
    engine.dispose()
    assert held == texts
