"""Device journals that cannot be forged or lost: each device signs its sync files with its own
key, the central registry (on PostgreSQL, and on SQLite through the same code) takes only files
signed by the key registered for the device they claim, a refused forgery never keeps a real
check out, one bad file in an import keeps nothing of it, and clone alerts name each device
with its own time."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from edge_app.cli import main
from edge_app.device_key import device_key, key_paths
from edge_app.errors import PufError
from edge_app.journal import Journal
from edge_app.journal_sync import SYNCED_TO, export_new
from edge_app.signing import signature_for
from edge_app.verb_journal import verb as journal_verb
from fabrication.central import TABLES, CentralRegistry
from tests.journal_support import check, register, set_time

ROOT = Path(__file__).resolve().parents[2]
L1, L2, L3 = "L1-0000-00", "L1-0000-01", "L1-0000-02"


def journal_of(folder: Path, labels: list[str]) -> Journal:
    """A device of its own (journal and key in `folder`) that checked `labels`, genuine."""
    journal = Journal(folder / "journal.sqlite")
    for label in labels:
        journal.record(check(label), None, "1-ab")
    return journal


def export(journal: Journal, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    [(path, _)] = export_new(journal, folder, again=True)
    return path


def forge(real: Path, out: Path, key=None, **changes) -> Path:
    """The real file with `changes` made to its header, each entry's verdict and label changed,
    and signed again with `key` (None: the real signature kept, as an editor would)."""
    data = json.loads(real.read_text())
    data.update(changes)
    for row in data["entries"]:
        row[2], row[3], row[11] = "counterfeit", None, data["device_id"]
    if key is not None:
        data["signature"] = signature_for(data, key)
    out.write_text(json.dumps(data))
    return out


def kept(url: str) -> list[tuple]:
    """Every check the central registry holds, as (device, id, verdict, label)."""
    engine = sa.create_engine(url)
    checks = TABLES.tables["verifications"]
    with engine.connect() as db:
        rows = db.execute(sa.select(checks.c.device_id, checks.c.id, checks.c.verdict, checks.c.label_id)
                          .order_by(checks.c.device_id, checks.c.id)).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def puf(*argv: str) -> int:
    return main([str(arg) for arg in argv])


def test_forged_sync_files_are_refused_and_every_real_check_is_kept(url, tmp_path, capsys):
    victim = journal_of(tmp_path / "victim", [L1, L2, L3])
    other = journal_of(tmp_path / "other", [L1])
    stranger = journal_of(tmp_path / "stranger", [L2])  # never registered
    real = export(victim, tmp_path / "real")
    forged = tmp_path / "forged"
    forged.mkdir()
    attacker_key = device_key(stranger.path)
    forgeries = {
        # a key of the attacker's own, claiming the victim
        "wrong key": (forge(real, forged / "a.json", attacker_key),
                      f"claims to be from device {victim.device_id} but is signed by key"),
        # another registered device's real key, claiming the victim
        "another device": (forge(real, forged / "b.json", device_key(other.path)),
                           f"claims to be from device {victim.device_id} but is signed by key"),
        # the victim's real signature over an edited file
        "altered": (forge(real, forged / "c.json"), "does not match the file's contents"),
        # a device the registry does not know
        "unregistered": (export(stranger, tmp_path / "stranger_usb"), "whose key is not registered"),
    }
    with CentralRegistry(url) as central:
        register(central, victim)
        register(central, other)
    for name, (path, message) in forgeries.items():
        assert puf("registry", "import", path, "--central", url) == 2, name
        error = capsys.readouterr().err
        assert message in error and "refused, nothing imported" in error, (name, error)
        assert kept(url) == [], name
    # a forgery in the same import as the real file: nothing of the import is kept
    assert puf("registry", "import", real, forgeries["wrong key"][0], "--central", url) == 2
    assert kept(url) == []

    # the real file after every forgery: every real check, as the device recorded it
    truth = [(victim.device_id, e.id, e.verdict, e.label_id) for e in reversed(victim.recent())]
    assert puf("registry", "import", real, "--central", url) == 0
    assert "3 new checks, 0 already here" in capsys.readouterr().out
    assert kept(url) == truth and [row[3] for row in truth] == [L1, L2, L3]
    # replayed: harmless; a forgery now: refused, the real rows untouched
    assert puf("registry", "import", real, "--central", url) == 0
    assert "0 new checks, 3 already here" in capsys.readouterr().out
    for path, _ in forgeries.values():
        assert puf("registry", "import", path, "--central", url) == 2
    assert kept(url) == truth


def test_one_bad_file_keeps_nothing_of_the_import_and_reaches_no_traceback(url, tmp_path):
    """A lone surrogate in the last of three files: refused with a clear message, exit 2, and
    the two good files before it are not kept either (one transaction per import)."""
    stick = tmp_path / "usb"
    journals = [journal_of(tmp_path / name, [L1]) for name in ("a", "b", "c")]
    with CentralRegistry(url) as central:
        for journal in journals:
            register(central, journal)
    paths = [export(journal, stick) for journal in journals]
    last = json.loads(paths[-1].read_text())
    last["entries"][0][7] = "\ud800"  # the reason: no UTF-8 for a lone surrogate
    last["signature"] = signature_for(last, device_key(journals[-1].path))  # signed, by the device itself
    paths[-1].write_text(json.dumps(last))  # json escapes it as \ud800
    done = subprocess.run([sys.executable, "-m", "edge_app.cli", "registry", "import", *map(str, paths),
                           "--central", url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{paths[-1]}: entry 0: reason is not valid text (a lone surrogate" in done.stderr
    assert kept(url) == []
    paths[-1].unlink()
    assert puf("registry", "import", stick, "--central", url) == 0
    assert len(kept(url)) == 2


def test_a_device_key_is_made_once_private_and_a_new_key_needs_replace(url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PUF_HOME", str(tmp_path / "home"))
    assert puf("journal", "identity", "--json") == 0  # at provisioning: the journal and key made now
    identity = json.loads(capsys.readouterr().out)
    private, public = key_paths(tmp_path / "home" / "journal.sqlite")
    assert identity["public_key"] == str(public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.is_file()
    assert puf("journal", "identity") == 0
    shown = capsys.readouterr().out
    assert identity["device_id"] in shown and identity["key_id"] in shown and "puf registry add-device" in shown
    with Journal(tmp_path / "home" / "journal.sqlite") as journal:
        journal.record(check(L1), None, "1-ab")
    stick = tmp_path / "usb"
    stick.mkdir()
    assert puf("journal", "export", stick) == 0
    assert f"signed by device {identity['device_id']}" in capsys.readouterr().err
    [first] = stick.iterdir()
    assert json.loads(first.read_text())["signature"]["key_id"] == identity["key_id"]  # the same key, kept

    # a key others can read is refused, as ssh refuses one
    os.chmod(private, 0o644)
    assert puf("journal", "export", stick, "--again") == 2
    assert "permissions 0644 for the device key" in capsys.readouterr().err
    os.chmod(private, 0o600)

    with CentralRegistry(url) as central:
        assert central.add_device(identity["device_id"], public) == (identity["key_id"], None)
        assert central.import_journal(first) == (1, 0)
        # the device is re-flashed and makes a new key: refused until registered with --replace
        private.unlink()
        public.unlink()
        (tmp_path / "usb2").mkdir()
        assert puf("journal", "export", tmp_path / "usb2", "--again") == 0
        [second] = (tmp_path / "usb2").iterdir()
        with pytest.raises(PufError, match="is signed by key"):
            central.import_journal(second)
        assert puf("registry", "add-device", identity["device_id"], public, "--central", url) == 2
        assert "give --replace" in capsys.readouterr().err
        assert puf("registry", "add-device", identity["device_id"], public, "--replace", "--central", url) == 0
        assert f"(replacing {identity['key_id']})" in capsys.readouterr().out
        assert central.import_journal(second) == (0, 1)
        with pytest.raises(PufError, match="is signed by key"):
            central.import_journal(first)  # the old key's files: refused from now on
    assert puf("registry", "add-device", "dev/../x", public, "--central", url) == 2
    assert "device id 'dev/../x' is not allowed: a device id is 1-64 letters" in capsys.readouterr().err
    assert puf("registry", "add-device", "dev-other", public, "--central", url) == 2  # one key, one device
    assert f"is registered for the device {identity['device_id']}" in capsys.readouterr().err


def test_an_unregistered_device_pushing_online_is_refused_and_its_mark_stays(url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PUF_HOME", str(tmp_path / "home"))
    with journal_of(tmp_path / "home", [L1]) as journal:
        assert puf("registry", "import", "--journal", journal.path, "--central", url) == 2
        assert "whose key is not registered" in capsys.readouterr().err
        assert not journal.meta(SYNCED_TO)
    assert kept(url) == []


def test_clone_alerts_name_each_device_with_its_own_time(url, tmp_path, capsys):
    """The device whose id sorts last checks first: the alert must still pair each device with
    the time of its own check."""
    a, b = (journal_of(tmp_path / name, []) for name in ("a", "b"))
    late, early = sorted([a, b], key=lambda journal: journal.device_id)  # the larger id checks first
    base = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    set_time(early, early.record(check(L1), None, "1-ab"), base)
    set_time(late, late.record(check(L1), None, "1-ab"), base + timedelta(hours=3))
    with CentralRegistry(url) as central:
        for journal in (a, b):
            register(central, journal)
            central.import_journal(export(journal, tmp_path / "usb"))
        [alert] = central.alerts(window_hours=24, min_km=50, max_checks=10)
    assert early.device_id > late.device_id
    assert alert.devices == (early.device_id, late.device_id)
    assert (alert.first, alert.last) == ("2026-11-02T08:00:00Z", "2026-11-02T11:00:00Z")
    assert puf("registry", "alerts", "--central", url) == 0
    assert (f"genuine on {early.device_id} at 2026-11-02T08:00:00Z and on {late.device_id} at "
            "2026-11-02T11:00:00Z") in capsys.readouterr().out


def test_journal_export_to_a_folder_that_is_not_there_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PUF_HOME", str(tmp_path / "home"))
    journal_of(tmp_path / "home", [L1]).close()
    media = tmp_path / "media"
    media.mkdir()
    usb = str(media / "usb")
    for out, message in ((usb, "is not a folder (is the USB stick mounted?)"),
                         (usb + "/", "is not a folder (is the USB stick mounted?)"),
                         (usb + "/checks.csv", f"the folder {usb} does not exist")):
        assert puf("journal", "export", out) == 2
        assert message in capsys.readouterr().err
        assert list(media.iterdir()) == []
    assert puf("journal", "export", media / "checks.csv") == 0  # a CSV file, as asked
    assert (media / "checks.csv").read_text().startswith("id,time,verdict")
    assert "signed JSON sync files" in journal_verb.summary and "CSV for sync" not in journal_verb.summary


# the checks' table as central schema 2 made it: no verdict "revoked"
OLD_VERIFICATIONS = """CREATE TABLE verifications (device_id TEXT NOT NULL REFERENCES devices (device_id),
    id BIGINT NOT NULL, time TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('genuine', 'counterfeit', 'unreadable')), label_id TEXT,
    score DOUBLE PRECISION, threshold DOUBLE PRECISION NOT NULL, pattern TEXT, reason TEXT NOT NULL,
    bundle_version TEXT NOT NULL, source TEXT NOT NULL, total_ms DOUBLE PRECISION, PRIMARY KEY (device_id, id))"""


@pytest.mark.parametrize("schema, missing", [("1", ("device_keys", "revocations")), ("2", ("revocations",))])
def test_an_older_central_registry_gains_the_device_keys_and_revocations_tables(url, tmp_path, schema, missing):
    CentralRegistry(url).close()
    engine = sa.create_engine(url)
    meta = TABLES.tables["meta"]
    with engine.begin() as db:  # as the central registry was before device keys (1) or revocations (2)
        for table in missing:
            TABLES.tables[table].drop(db)
        TABLES.tables["verifications"].drop(db)
        db.execute(sa.text(OLD_VERIFICATIONS))
        db.execute(meta.update().where(meta.c.key == "central_schema").values(value=schema))
    with CentralRegistry(url) as central:
        journal = journal_of(tmp_path / "d", [L1])
        register(central, journal)
        assert central.import_journal(export(journal, tmp_path / "usb")) == (1, 0)
        assert central.revocations() == []
        journal.record(check(L1, "revoked"), None, "v2")  # a device that saw the label revoked
        assert central.import_journal(export(journal, tmp_path / "usb2")) == (1, 1)  # the revoked check new
    with engine.connect() as db:
        assert db.execute(sa.select(meta.c.value).where(meta.c.key == "central_schema")).scalar() == "3"
    engine.dispose()
