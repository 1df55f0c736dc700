"""Japanese first: every message marked for a person has its Japanese translation, the
compiled catalog is the .po's, and the CLI speaks Japanese under a Japanese locale.

A message is marked with `_()`/`ngettext()`/`N_()` (reader/system/i18n.py); Babel
extracts them as `scripts/catalog.py` does. Every `help=`, `description=` and `epilog=`
of the CLI must be marked, so no --help text can slip past the catalog.
"""

from __future__ import annotations

import ast
import gettext
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from daemon_env import language_env

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import catalog  # noqa: E402  (scripts/catalog.py: the same extraction the developers run)

PO = REPO / "reader" / "locale" / "ja" / "LC_MESSAGES" / "sukumo-reader.po"
PLACEHOLDER = re.compile(r"\{[^{}]*\}|%\([a-z_]+\)[sdr]|%[sdr]")


def _japanese() -> dict[str, object]:
    with PO.open("rb") as fh:
        return {m.id: m for m in read_po(fh) if m.id}


def test_every_marked_message_has_a_japanese_translation() -> None:
    translated = _japanese()
    missing = []
    for message in catalog.extract():
        if not message.id:
            continue
        entry = translated.get(message.id)
        strings = entry.string if entry is not None else None  # type: ignore[attr-defined]
        ok = all(strings) if isinstance(strings, tuple) else bool(strings)
        if not ok or (entry is not None and entry.fuzzy):  # type: ignore[attr-defined]
            missing.append(message.id)
    assert missing == [], ("messages without a Japanese translation (run "
                           "scripts/catalog.py, then translate):\n" +
                           "\n".join(map(repr, missing)))


def test_translations_keep_every_placeholder() -> None:
    for msgid, entry in _japanese().items():
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)  # type: ignore[attr-defined]
        wanted = sorted(PLACEHOLDER.findall(ids[-1]))
        for text in strings:
            assert sorted(PLACEHOLDER.findall(text)) == wanted, (msgid, text)


def test_the_compiled_catalog_is_the_po() -> None:
    with PO.with_suffix(".mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    for msgid, entry in _japanese().items():
        if isinstance(msgid, tuple):
            assert compiled.ngettext(msgid[0], msgid[1], 2) == entry.string[0]  # type: ignore[attr-defined]
        else:
            assert compiled.gettext(msgid) == entry.string, msgid  # type: ignore[attr-defined]


def test_every_help_text_of_the_cli_is_marked() -> None:
    unmarked = []
    for path in sorted((REPO / "reader" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg in ("help", "description", "epilog"):
                value = node.value
                if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                        and value.func.attr == "format"):
                    value = value.func.value  # _("... {x} ...").format(x=...)
                marked = isinstance(value, ast.Call) and getattr(value.func, "id", "") == "_"
                suppressed = isinstance(value, ast.Attribute) and value.attr == "SUPPRESS"
                if not (marked or suppressed):
                    unmarked.append(f"{path.name}:{node.lineno} {node.arg}=")
    assert unmarked == [], "help texts not marked for translation:\n" + "\n".join(unmarked)


def _cli(*args: str, lang: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reader", *args], capture_output=True,
                          text=True, env=language_env(lang), cwd=REPO, timeout=60)


@pytest.mark.parametrize("command", [(), ("doctor",), ("queue",), ("bundle", "import"),
                                     ("tap",), ("issue-card", "new")])
def test_help_is_japanese_under_a_japanese_locale(command: tuple[str, ...]) -> None:
    ja = _cli(*command, "--help", lang="ja_JP.UTF-8")
    assert ja.returncode == 0, ja.stderr
    assert ja.stdout.startswith("使い方: ") and "オプション:" in ja.stdout
    # Every described argument line reads in Japanese: nothing left in English.
    for line in ja.stdout.splitlines():
        words = re.findall(r"[A-Za-z]{4,}", re.sub(r"\s(-{1,2}[\w-]+|[A-Z_]{2,})", " ", line))
        english = [w for w in words if w.lower() in {"the", "with", "when", "from", "this",
                                                     "that", "every", "print", "show"}]
        assert not english, f"English left in: {line!r}"
    en = _cli(*command, "--help", lang="C.UTF-8")
    assert en.stdout.startswith("usage: ") and "options:" in en.stdout


def test_argparse_errors_are_japanese_too() -> None:
    done = _cli("queue", "export", lang="ja_JP.UTF-8")
    assert done.returncode == 2
    assert "次の引数が必要です: --format" in done.stderr
