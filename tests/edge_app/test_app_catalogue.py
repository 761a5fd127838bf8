"""The app's translation catalogue: the code's `_()` strings are exactly the .pot's, every
language translates all of them with the same placeholders, and each .mo is its .po
compiled (`tools/i18n_catalogue.py`). The app shown in German is tested in test_app.py."""

import gettext
import shutil
import string
import subprocess

import pytest

from edge_app.app import i18n
from edge_app.cli import main
from edge_app.verdicts import Kind
from tools.i18n_catalogue import ROOT, catalogues, check, extract, mo_bytes, read_po, update


@pytest.fixture
def english():
    yield
    i18n.set_language("en")


def test_the_pot_lists_exactly_the_strings_the_code_translates():
    messages = extract()
    pot = read_po(ROOT / "edge_app" / "app" / "locale" / "puf.pot")
    assert set(pot) - {""} == set(messages)
    assert all(text == "" for key, text in pot.items() if key)  # a template translates nothing
    # strings from each place the app shows words: the shared kv, each screen's controller and kv layout,
    # the app, its inspection, the capture assist
    places = {place.split(":")[0] for where in messages.values() for place in where}
    screens = {f"edge_app/app/{screen}.{kind}" for screen in ("preview", "verdict", "history", "settings")
               for kind in ("py", "kv")}
    assert places == {"edge_app/app/puf.kv", "edge_app/app/puf_app.py", "edge_app/app/inspection.py",
                      "edge_app/camera/assist.py", *screens}
    assert {"CAPTURE", "GENUINE", "Label size", "Language", "Ready"} <= set(messages)
    assert check() == []


def test_german_translates_every_string_keeping_its_placeholders():
    (po,) = [p for p in catalogues() if p.parents[1].name == "de"]
    entries = read_po(po)
    messages = extract()
    assert set(entries) - {""} == set(messages) and all(entries[m] for m in messages)

    def fields(text: str) -> set:
        return {(name, spec) for _, name, spec, _ in string.Formatter().parse(text) if name is not None}

    for msgid in messages:
        assert fields(entries[msgid]) == fields(msgid), msgid
    assert "Language: de" in entries[""] and "charset=UTF-8" in entries[""]


def test_each_mo_is_its_po_compiled(tmp_path):
    for po in catalogues():
        entries = read_po(po)
        mo = po.with_suffix(".mo")
        assert mo.read_bytes() == mo_bytes(entries), f"{mo}: run python tools/i18n_catalogue.py update"
        with mo.open("rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
        assert catalog == {k: v for k, v in entries.items() if v}
        if shutil.which("msgfmt"):  # GNU gettext, where installed, reads the .po the same way
            gnu = tmp_path / f"{po.parents[1].name}.mo"
            subprocess.run(["msgfmt", "--check-format", "-o", str(gnu), str(po)], check=True)
            with gnu.open("rb") as handle:
                assert gettext.GNUTranslations(handle)._catalog == catalog


def copy_of_the_code(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "edge_app", root / "edge_app", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_a_new_string_fails_the_check_until_it_is_translated(tmp_path):
    root = copy_of_the_code(tmp_path)
    module = root / "edge_app" / "app" / "inspection.py"
    module.write_text(module.read_text() + '\n\ndef new() -> str:\n    return _("A brand new sentence")\n')
    problems = check(root)
    assert any("puf.pot does not list exactly" in p for p in problems)
    assert "de: not in puf.po: A brand new sentence" in problems
    missing = update(root)  # the .pot and .po now list it, untranslated
    assert missing == ["de: A brand new sentence"]
    assert check(root) == ["de: untranslated: A brand new sentence"]
    po = root / "edge_app" / "app" / "locale" / "de" / "LC_MESSAGES" / "puf.po"
    assert read_po(po)["GENUINE"] == "ECHT"  # the translations kept


@pytest.mark.parametrize("source, line", [
    ("edge_app/app/inspection.py", '\nx = _(f"{1} label")\n'),
    ("edge_app/app/inspection.py", '\nx = _("a" + "b")\n'),
    ("edge_app/app/inspection.py", '\nx = N_(TITLES["genuine"])\n'),
    ("edge_app/app/puf.kv", "\n<Extra@Label>:\n    text: app.tr._(app.hint)\n"),
])
def test_a_string_that_cannot_be_looked_up_is_refused(tmp_path, source, line):
    root = copy_of_the_code(tmp_path)
    path = root / source
    path.write_text(path.read_text() + line)
    with pytest.raises(ValueError, match="literal string"):
        extract(root)


@pytest.mark.parametrize("environ, language", [
    ({}, "en"),
    ({"LANG": "de_DE.UTF-8"}, "de"),
    ({"LANG": "de_AT.UTF-8", "LC_ALL": "C"}, "en"),  # LC_ALL comes first
    ({"LANGUAGE": "fr:de", "LANG": "en_GB.UTF-8"}, "de"),  # the first language the app has
    ({"LANGUAGE": "", "LC_MESSAGES": "de_CH"}, "de"),
    ({"LANG": "ja_JP.UTF-8"}, "en"),
])
def test_the_default_language_is_the_environment_s(environ, language):
    assert i18n.default_language(environ) == language


def test_set_language_switches_every_later_lookup(english):
    from edge_app.app.inspection import Outcome

    outcome = Outcome(kind=Kind.GENUINE, detail="", label_id="V1-0003", score=0.9, threshold=0.62, pattern=None,
                      labels=1, verdicts=[], shown=0, crop=None, thumbnail=None, verify_ms=3.0, entry_id=1, source="x")
    assert outcome.title == "GENUINE"
    i18n.set_language("de")
    assert i18n.language() == "de" and outcome.title == "ECHT" and i18n._("not in the catalogue") == \
        "not in the catalogue"
    i18n.set_language("en")
    assert outcome.title == "GENUINE"


def test_an_unknown_language_is_a_clear_error(capsys):
    assert main(["app", "--language", "xx"]) == 2
    assert "no language 'xx' in the app: choose one of en, de" in capsys.readouterr().err
