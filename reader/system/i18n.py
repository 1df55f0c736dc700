"""Messages people read, in their language: Japanese when the locale says so, else English.

The catalogs are gettext's (reader/locale/<lang>/LC_MESSAGES/sukumo-reader.mo, compiled
by Babel from the .po beside it; tests/test_i18n.py fails on a message without a
translation). The language comes from the environment as gettext reads it (LANGUAGE,
LC_ALL, LC_MESSAGES, LANG): firmware_config/locale sets ja_JP.UTF-8 on a terminal.
`install()` also makes our catalog the default gettext domain, so argparse's own words
("usage:", "options", its errors) come out in the same language as ours.

Only what a person reads is translated: the CLI, doctor, provision, error messages, the
kiosk. Logs stay English and structured, for the people who search them.
"""

from __future__ import annotations

import gettext
import unicodedata
from pathlib import Path

DOMAIN = "sukumo-reader"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

_translation = gettext.translation(DOMAIN, LOCALE_DIR, fallback=True)


def _(message: str) -> str:
    """The message in the reader's language (the English text is the key)."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translation.ngettext(singular, plural, n)


def install() -> None:
    """Pick the language from the environment now, and lend the catalog to argparse."""
    global _translation
    _translation = gettext.translation(DOMAIN, LOCALE_DIR, fallback=True)
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)


def use_english() -> None:
    """The English originals for the rest of this process, whatever the locale: the
    daemon's journal stays English (its log lines quote exception texts)."""
    global _translation
    _translation = gettext.NullTranslations()


def language() -> str:
    """The catalog in use ("ja"), or "en" when the messages are the English originals."""
    info = _translation.info()
    return info.get("language", "en") if isinstance(_translation, gettext.GNUTranslations) \
        else "en"


def display_width(text: str) -> int:
    """How many terminal columns `text` takes: East Asian wide and full-width characters
    (端末の鍵) take two, so that columns line up under Japanese words too."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def ljust(text: str, width: int) -> str:
    """`text` padded with spaces to `width` terminal columns (str.ljust counts characters)."""
    return text + " " * max(width - display_width(text), 0)


def rjust(text: str, width: int) -> str:
    return " " * max(width - display_width(text), 0) + text


def N_(message: str) -> str:  # gettext's name for "mark now, translate at use"
    """Marks a message for the catalog where it is defined; `_()` translates it at use."""
    return message


# argparse's own words, as Python 3.11 spells them: in our catalog so that `--help` and
# argparse's errors come out in the reader's language too (install() lends it the catalog).
ARGPARSE_WORDS = (
    N_("usage: "), N_("options"), N_("positional arguments"),
    N_("show this help message and exit"), N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"), N_("the following arguments are required: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("unrecognized arguments: %s"), N_("expected one argument"),
    N_("argument %(argument_name)s: %(message)s"), N_("invalid %(type)s value: %(value)r"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("not allowed with argument %s"), N_("one of the arguments %s is required"),
)
