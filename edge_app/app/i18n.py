"""The app's words in the inspector's language (gettext).

Every string the app shows goes through `_()`; a string kept in a table and translated
where it is shown is marked with `N_()`. The catalogue is one gettext domain, ``puf``:
``locale/puf.pot`` lists every string, ``locale/LANG/LC_MESSAGES/puf.po`` translates them
and ``puf.mo`` is its compiled form, which is what is read here
(`tools/i18n_catalogue.py` extracts, merges and compiles). English is the source language
and needs no catalogue. No Kivy here: the app's kv rules reach `_()` through an observable
wrapper (`edge_app.app.puf_app.Translator`) that re-renders them when the language changes.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from pathlib import Path

from edge_app.errors import PufError

DOMAIN = "puf"
LOCALE_DIR = Path(__file__).with_name("locale")
SOURCE_LANGUAGE = "en"
NAMES = {"en": "English", "de": "Deutsch"}  # each language by its own name, as Settings lists it
ENVIRONMENT = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")  # gettext's order: the first one set decides

_translation: gettext.NullTranslations = gettext.NullTranslations()
_language = SOURCE_LANGUAGE


def N_(text: str) -> str:  # noqa: N802 (gettext's name for it)
    """Mark a string for the catalogue where it is defined; `_()` translates it where shown."""
    return text


def _(text: str) -> str:
    """`text` in the language in use (itself when the catalogue has no translation)."""
    return _translation.gettext(text)


def languages() -> dict[str, str]:
    """The languages the app can show: English and every language with a compiled catalogue,
    code -> name."""
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo"))
    return {SOURCE_LANGUAGE: NAMES[SOURCE_LANGUAGE], **{code: NAMES.get(code, code) for code in found}}


def language_code(text: str) -> str:
    """The language of a locale name: "de_DE.UTF-8" -> "de", "C" -> "c"."""
    return text.split(".")[0].split("@")[0].split("_")[0].split("-")[0].strip().lower()


def default_language(environ: Mapping[str, str] | None = None) -> str:
    """The language the environment asks for, as gettext reads it (the first of LANGUAGE,
    LC_ALL, LC_MESSAGES, LANG that is set; LANGUAGE may list several, "de:fr"), if the app
    has it; else English."""
    environ = os.environ if environ is None else environ
    available = languages()
    for name in ENVIRONMENT:
        value = environ.get(name, "")
        if value:
            return next((code for part in value.split(":") if (code := language_code(part)) in available),
                        SOURCE_LANGUAGE)
    return SOURCE_LANGUAGE


def check_language(code: str) -> str:
    """`code` if the app has that language; PufError naming the ones it has otherwise."""
    available = languages()
    if code not in available:
        raise PufError(f"no language {code!r} in the app: choose one of {', '.join(available)}")
    return code


def set_language(code: str) -> None:
    """Show the app in `code` (a language `languages()` lists) from now on."""
    global _translation, _language
    check_language(code)
    _translation = (gettext.NullTranslations() if code == SOURCE_LANGUAGE
                    else gettext.translation(DOMAIN, LOCALE_DIR, [code]))
    _language = code


def language() -> str:
    """The language in use."""
    return _language
