"""The app's translation catalogue: extract its strings, merge them into each language,
compile the catalogues gettext reads.

    python tools/i18n_catalogue.py update    # locale/puf.pot from the code, every puf.po merged, puf.mo compiled
    python tools/i18n_catalogue.py check     # exit 1 if the .pot, a .po or a .mo is out of date or untranslated

The strings are the literal arguments of `_()` and `N_()` in every `edge_app` module that
imports them from `edge_app.app.i18n`, and of `app.tr._()` in the app's kv layout. `_()`
may also be given a name (a string marked with `N_()` where it is defined); any other
argument is an error (an f-string or a sum of strings cannot be looked up).
Translators edit `locale/LANG/LC_MESSAGES/puf.po`; `update` keeps their translations, adds
new strings untranslated and drops strings the code no longer has. The .mo is written
here, in Python (the layout GNU msgfmt writes: header, sorted original and translated
string tables), so neither Babel nor GNU gettext is needed.
"""

from __future__ import annotations

import argparse
import ast
import re
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "edge_app" / "app"
LOCALE_DIR = APP / "locale"
POT = LOCALE_DIR / "puf.pot"
KEYWORDS = ("_", "N_")
KV_CALL = re.compile(r"""\btr\._\(\s*(?P<text>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*\)""")
HEADER = ("Project-Id-Version: puf-labels app\n"
          "MIME-Version: 1.0\n"
          "Content-Type: text/plain; charset=UTF-8\n"
          "Content-Transfer-Encoding: 8bit\n")


def python_strings(path: Path) -> list[tuple[str, int]]:
    """The (string, line) of every `_()` / `N_()` call in a module that imports them from
    the app's i18n module; ValueError for a call that is not given one literal string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "edge_app.app.i18n"
                for alias in node.names if alias.name in KEYWORDS}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
            args = node.args
            literal = len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
            marked = len(args) == 1 and isinstance(args[0], (ast.Name, ast.Attribute, ast.Subscript))
            if node.keywords or not (literal or (marked and node.func.id == "_")):
                raise ValueError(f"{path}:{node.lineno}: {node.func.id}() needs one literal string")
            if literal:
                found.append((args[0].value, node.lineno))
    return sorted(found, key=lambda item: item[1])


def kv_strings(path: Path) -> list[tuple[str, int]]:
    """The (string, line) of every `tr._('...')` in a kv file; ValueError for a `_(` that
    is not one."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        calls = [ast.literal_eval(match.group("text")) for match in KV_CALL.finditer(line)]
        if line.count("_(") != len(calls):
            raise ValueError(f"{path}:{number}: every _() in kv must be app.tr._('one literal string')")
        found += [(text, number) for text in calls]
    return sorted(found, key=lambda item: item[1])


def extract(root: Path = ROOT) -> dict[str, list[str]]:
    """Every string the app translates -> where it is used ("path:line"), in source order."""
    messages: dict[str, list[str]] = {}
    sources = sorted((root / "edge_app").rglob("*.py")) + sorted((root / "edge_app" / "app").glob("*.kv"))
    for path in sources:
        strings = kv_strings(path) if path.suffix == ".kv" else python_strings(path)
        for text, line in strings:
            if not text:
                raise ValueError(f"{path}:{line}: an empty string cannot be translated")
            messages.setdefault(text, []).append(f"{path.relative_to(root).as_posix()}:{line}")
    return messages


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def po_text(messages: dict[str, list[str]], translations: dict[str, str], header: str) -> str:
    """A .po (or, with no translations, the .pot) in the code's order."""
    parts = [f'msgid ""\nmsgstr {quote(header)}\n']
    for msgid, places in messages.items():
        parts.append("".join(f"#: {place}\n" for place in places)
                     + f"msgid {quote(msgid)}\nmsgstr {quote(translations.get(msgid, ''))}\n")
    return "\n".join(parts)


def read_po(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po (the header under ""): the subset this tool writes, with
    strings continued on following lines as translators' editors write them."""
    entries: dict[str, str] = {}
    key, current = None, {"msgid": None, "msgstr": None}

    def close() -> None:
        if current["msgid"] is not None:
            entries[current["msgid"]] = current["msgstr"] or ""

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word in ("msgid", "msgstr"):
            if word == "msgid":
                close()
                current = {"msgid": None, "msgstr": None}
            key, line = word, rest.strip()
        if key is None or not (line.startswith('"') and line.endswith('"')):
            raise ValueError(f"{path}:{number}: not a line of a .po this tool reads: {raw!r}")
        current[key] = (current[key] or "") + ast.literal_eval(line)
    close()
    return entries


def mo_bytes(entries: dict[str, str]) -> bytes:
    """A GNU .mo of the translated entries (and the header), little-endian, no hash table."""
    pairs = sorted((k.encode(), v.encode()) for k, v in entries.items() if v)
    count = len(pairs)
    originals_at = 7 * 4
    translations_at = originals_at + count * 8
    data_at = translations_at + count * 8
    table, blob = [], b""
    for text in [source for source, _ in pairs] + [target for _, target in pairs]:
        table.append((len(text), data_at + len(blob)))
        blob += text + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, count, originals_at, translations_at, 0, 0)
    return head + b"".join(struct.pack("<2I", *row) for row in table) + blob


def catalogues(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    return sorted(locale_dir.glob("*/LC_MESSAGES/puf.po"))


def update(root: Path = ROOT) -> list[str]:
    """Write the .pot from the code, merge every .po with it, compile every .mo; the
    strings each language still lacks, as "LANG: string"."""
    messages = extract(root)
    locale_dir = root / "edge_app" / "app" / "locale"
    (locale_dir / "puf.pot").write_text(po_text(messages, {}, HEADER), encoding="utf-8")
    missing = []
    for po in catalogues(locale_dir):
        old = read_po(po)
        po.write_text(po_text(messages, old, old.get("", HEADER)), encoding="utf-8")
        po.with_suffix(".mo").write_bytes(mo_bytes(read_po(po)))
        missing += [f"{po.parents[1].name}: {msgid}" for msgid in messages if not old.get(msgid)]
    return missing


def check(root: Path = ROOT) -> list[str]:
    """What is out of date: the .pot against the code, each .po against the .pot (and
    untranslated strings), each .mo against its .po."""
    messages = extract(root)
    locale_dir = root / "edge_app" / "app" / "locale"
    pot = locale_dir / "puf.pot"
    problems = []
    if not pot.is_file() or set(read_po(pot)) - {""} != set(messages):
        problems.append(f"{pot} does not list exactly the code's strings")
    for po in catalogues(locale_dir):
        entries = read_po(po)
        lang = po.parents[1].name
        problems += [f"{lang}: not in {po.name}: {m}" for m in messages if m not in entries]
        problems += [f"{lang}: untranslated: {m}" for m in messages if m in entries and not entries[m]]
        problems += [f"{lang}: no longer in the code: {m}" for m in entries if m and m not in messages]
        mo = po.with_suffix(".mo")
        if not mo.is_file() or mo.read_bytes() != mo_bytes(entries):
            problems.append(f"{mo} is not {po.name} compiled")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("update", "check"))
    args = parser.parse_args(argv)
    problems = update() if args.action == "update" else check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.action == "update":
        print(f"wrote {POT.relative_to(ROOT)} and {len(catalogues())} catalogue(s); {len(problems)} untranslated",
              file=sys.stderr)
        return 0
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
