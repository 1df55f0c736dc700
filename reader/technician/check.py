"""One answer of `sukumo-reader doctor`: the question, ✓ or ✗, what was seen, what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
