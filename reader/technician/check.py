"""One answer of `sukumo-reader doctor`: the question, ✓ or ✗, what was seen, what to do.

`name` is a stable English id (doctor --json's `name`, read by scripts and tests); `title`
is the same question in the reader's language, for the person reading the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from reader.system.i18n import N_, _

# Every check's display title, by its id (the ids are the English titles).
TITLES = {
    "config": N_("config"),
    "terminal key": N_("terminal key"),
    "certificate": N_("certificate"),
    "pcscd": N_("pcscd"),
    "reader": N_("reader"),
    "audio": N_("audio"),
    "clock": N_("clock"),
    "broker": N_("broker"),
    "bundles": N_("bundles"),
    "state directory": N_("state directory"),
    "disk": N_("disk"),
    "queue": N_("queue"),
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""

    @property
    def title(self) -> str:
        """The check's name in the reader's language (an unknown id is shown as it is)."""
        return _(TITLES[self.name]) if self.name in TITLES else self.name

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "ok": self.ok, "detail": self.detail,
                "advice": self.advice}
