"""The fleet page's words in the language each request asks for, from the project's one
catalog (reader/system/i18n.py, reader/locale/<lang>/LC_MESSAGES/sukumo-reader.po).

Why the same catalog as the terminal's rather than one of the city's own: the city's
command line already speaks through it (`reader.system.i18n._`), translators keep one
file and tests/test_i18n.py checks every word of both sides; the terminal's .mo carries a
few kilobytes more. What differs is only who chooses the language: a terminal's process
has one locale, while the fleet page answers each request in the language of its reader
(Accept-Language, else the `[web] language` setting, Japanese by default) — hence `Words`.
"""

from __future__ import annotations

import gettext
from functools import cache

from reader.system.i18n import DOMAIN, LOCALE_DIR

LANGUAGES = ("ja", "en")  # what the city side speaks; the first is the default


@cache
def _catalog(language: str) -> gettext.NullTranslations:
    if language == "en":
        return gettext.NullTranslations()  # the English originals are the keys
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


class Words:
    """One request's language; call it as `_`: `words("Terminals")` → 端末."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else LANGUAGES[0]
        self._t = _catalog(self.language)

    def __call__(self, message: str) -> str:
        return self._t.gettext(message)


def pick_language(accept_language: str | None, default: str = LANGUAGES[0]) -> str:
    """The first language of the browser's Accept-Language (RFC 9110 §12.5.4, by q) that
    the city speaks, else `default`."""
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate((accept_language or "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            ranked.append((-q, n, tag.split("-")[0].lower()))
    for _q, _n, tag in sorted(ranked):
        if tag in LANGUAGES:
            return tag
        if tag == "*":
            return default
    return default
