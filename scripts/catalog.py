#!/usr/bin/env python3
"""Keep the message catalogs up to date (Babel): extract, merge into each .po, compile.

    uv run python scripts/catalog.py     # after changing or adding a message

Extraction reads `_()`, `ngettext()` and `N_()` in reader/ and city/ (babel.cfg): the
city service's commands speak the same two languages from the same catalog. A new message
appears in reader/locale/ja/LC_MESSAGES/sukumo-reader.po with an empty translation, and
tests/test_i18n.py fails until a translator fills it in.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

REPO = Path(__file__).resolve().parent.parent
LOCALE = REPO / "reader" / "locale"
DOMAIN = "sukumo-reader"


def extract() -> Catalog:
    """Every message marked in reader/ and city/, as a template."""
    with tempfile.TemporaryDirectory() as tmp:
        pot = Path(tmp) / f"{DOMAIN}.pot"
        subprocess.run([sys.executable, "-m", "babel.messages.frontend", "-q", "extract",
                        "-F", str(REPO / "babel.cfg"), "-k", "_", "-k", "ngettext:1,2",
                        "-k", "N_", "--no-location", "--omit-header", "--sort-output",
                        "-o", str(pot), str(REPO / "reader"), str(REPO / "city")],
                       check=True)
        with pot.open("rb") as fh:
            return read_po(fh)


def catalogs() -> list[Path]:
    return sorted(LOCALE.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def main() -> int:
    template = extract()
    for po in catalogs():
        with po.open("rb") as fh:
            catalog = read_po(fh)
        created = catalog.creation_date  # kept: a run that changes no message changes no file
        catalog.update(template, no_fuzzy_matching=True)
        catalog.creation_date = created
        catalog.obsolete.clear()
        catalog.project, catalog.version = DOMAIN, ""
        catalog.msgid_bugs_address = ""
        catalog.last_translator = catalog.language_team = "sukumo-reader developers"
        with po.open("wb") as fh:
            write_po(fh, catalog, no_location=True, sort_output=True, width=100)
        with po.with_suffix(".mo").open("wb") as fh:
            write_mo(fh, catalog)
        untranslated = [m.id for m in catalog if m.id and not (
            all(m.string) if isinstance(m.string, tuple) else m.string)]  # plurals: each form
        print(f"{po.relative_to(REPO)}: {len(catalog)} messages, "
              f"{len(untranslated)} to translate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
