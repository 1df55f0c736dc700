"""What a mode is: check 9 of card-ap-v1 §4, as a pure decision over the queue's database.

Theory of operation. A mode never writes and never remembers anything in memory. It reads
its state (tables `mode_*`, created by the queue's schema migration 2) and returns a
`Decision` whose `extra_sql` the daemon hands to `EventQueue.append`, so the state change
and the event commit in ONE transaction: a power cut leaves both or neither, and a
restarted daemon (or one that was offline for a week) decides exactly as before.

Only accepted taps write state. A rejected tap (checks 1-8, or this mode's own
`duplicate` / `not_eligible`) changes nothing, so a child tapping again and again inside
the gap never pushes its own window forward. Time is the tap's `at_ms` (wall clock, Unix
ms); a tap whose clock reads earlier than the stored one (the clock was stepped back) is
never called a duplicate: a wrong clock must not lock members out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..record import CardRecord

SOUNDS = ("accepted", "duplicate", "arrival", "departure", "coupon", "rejected")
REASONS = ("duplicate", "not_eligible", "outside_schedule")


@dataclass(frozen=True)
class Decision:
    reason: str | None  # None = accepted; else one of REASONS
    detail: dict[str, Any]  # the event's `detail` (mqtt-v1 §2)
    sound: str  # one of SOUNDS
    # Mode-state writes, run by EventQueue.append in the event's transaction.
    extra_sql: list[tuple[str, tuple]] = field(default_factory=list)
    send_now: bool = False  # watch mode: the sync sends it at once

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in REASONS:
            raise ValueError(f"unknown mode reason {self.reason!r}")
        if self.sound not in SOUNDS:
            raise ValueError(f"unknown sound {self.sound!r}")
        if self.reason is not None and self.extra_sql:
            raise ValueError("a rejected tap must not change mode state")


def refuse(reason: str, sound: str = "rejected", **detail: Any) -> Decision:
    return Decision(reason, dict(detail), sound)


class Mode(ABC):
    name: ClassVar[str]

    @abstractmethod
    def decide(self, db: Database, record: CardRecord, at_ms: int) -> Decision:
        """Check 9 for a tap that passed checks 1-8; reads `db`, never writes it."""


def within(at_ms: int, since_ms: int | None, window_s: int) -> bool:
    """True when `at_ms` is inside the window that opened at `since_ms` (None: no window).

    A clock stepped backwards (at_ms < since_ms) is outside: see the module docstring.
    """
    return since_ms is not None and 0 <= at_ms - since_ms < window_s * 1000


def local_time(at_ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)


def one(db: Database, sql: str, params: tuple) -> tuple | None:
    row = db.execute(sql, params).fetchone()
    return tuple(row) if row is not None else None
