"""What a mode is: check 9 of card-ap-v1 §4, as a pure decision.

Theory of operation. A mode never writes and never remembers anything in memory. It reads
its state through the `ModeState` it is handed and returns a `Decision` whose `updates`
the queue applies in the event's own transaction (EventQueue.append): a power cut leaves
both or neither, and a restarted daemon (or one that was offline for a week) decides
exactly as before.

Only accepted taps change state. A rejected tap (checks 1-8, or this mode's own
`duplicate` / `not_eligible`) changes nothing, so a child tapping again and again inside
the gap never pushes its own window forward. Time (`at_ms`, Unix ms) is the modes' clock
(clock.py): it never goes backwards and does not follow a wall clock that jumped, so a
double tap across a step back is still a duplicate and a step forward prunes nothing
early.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from reader.card.reasons import MODE_REASONS, Reason
from reader.card.record import CardRecord
from reader.modes.state import ModeState, Retention, StateUpdate
from reader.wire.event import Mode as ModeName


class Sound(StrEnum):
    """What the citizen hears: one clip each in sounds/ (reader/sound/clips.py)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    ARRIVAL = "arrival"
    DEPARTURE = "departure"
    COUPON = "coupon"
    ERROR = "error"  # the tap could not be read or stored: never a mode's verdict


def resident(record: CardRecord, home_muni: str) -> CardRecord:
    """The record as the modes key their state: member ids are unique within a town only,
    so a neighbouring town's resident is `<muni>:<mid>` (never counted with a home member
    of the same id). A home card is as it is, so the state kept before 横展開 holds."""
    if record.muni == home_muni:
        return record
    return replace(record, mid=f"{record.muni}:{record.mid}")


@dataclass(frozen=True)
class Decision:
    reason: Reason | None  # None = accepted; else one of MODE_REASONS
    detail: Mapping[str, Any]  # the event's `detail` (mqtt-v1 §2)
    sound: Sound
    updates: tuple[StateUpdate, ...] = ()  # applied with the event, in its transaction
    send_now: bool = False  # watch mode: the sync sends it at once

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in MODE_REASONS:
            raise ValueError(f"unknown mode reason {self.reason!r}")
        if self.sound is Sound.ERROR:
            raise ValueError("a mode decides; the error sound is the terminal's")
        if self.reason is not None and self.updates:
            raise ValueError("a rejected tap must not change mode state")


def accept(sound: Sound, *updates: StateUpdate, send_now: bool = False,
           **detail: Any) -> Decision:
    return Decision(None, dict(detail), sound, updates, send_now)


def refuse(reason: Reason, sound: Sound = Sound.REJECTED, **detail: Any) -> Decision:
    return Decision(reason, dict(detail), sound)


class Mode(ABC):
    name: ClassVar[ModeName]

    @abstractmethod
    def decide(self, state: ModeState, record: CardRecord, at_ms: int) -> Decision:
        """Check 9 for a tap that passed checks 1-8."""

    def retention(self, keep: Retention, now_ms: int) -> Retention:
        """`keep` with this mode's need at `now_ms` added (a mode without state: as is)."""
        return keep


def within(at_ms: int, since_ms: int | None, window_s: int) -> bool:
    """True when `at_ms` is inside the window that opened at `since_ms` (None: no window).

    at_ms < since_ms (only from state written before the modes had their own clock) is
    outside: a wrong clock must not lock members out.
    """
    return since_ms is not None and 0 <= at_ms - since_ms < window_s * 1000


def local_time(at_ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
