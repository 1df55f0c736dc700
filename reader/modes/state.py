"""What a mode may know and change: the narrow interface between policy and storage.

A mode reads its state through `ModeState` (the queue implements it over its tables,
reader/queue/mode_state.py) and says what to change as `StateUpdate` values in its
Decision. The queue turns those into SQL in the same transaction as the event, so a power
cut leaves both or neither. Modes themselves hold no database handle and write nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Direction = Literal["arrival", "departure"]


@dataclass(frozen=True)
class NurseryLast:
    day: str  # local date, ISO
    direction: Direction
    at_ms: int


@dataclass(frozen=True)
class CouponLast:
    coupon: str
    at_ms: int


class ModeState(Protocol):
    def checkin_last(self, mid: str) -> int | None:
        """at_ms of the member's last accepted check-in, if any."""
        ...

    def attended(self, event_code: str, mid: str) -> bool:
        """Whether the member's attendance of the event is already counted."""
        ...

    def nursery_last(self, mid: str) -> NurseryLast | None:
        """The child's last accepted tap."""
        ...

    def coupon_last(self, mid: str) -> CouponLast | None:
        """The member's last accepted coupon tap, of any kind."""
        ...

    def coupon_used(self, mid: str, coupon: str, period: str) -> int:
        """How many uses of the coupon kind the member had in the period."""
        ...


# -- the updates a Decision carries, one per kind of mode state ---------------------------

@dataclass(frozen=True)
class CheckedIn:
    mid: str
    at_ms: int


@dataclass(frozen=True)
class Attended:
    event_code: str
    mid: str
    at_ms: int


@dataclass(frozen=True)
class NurseryPassed:
    mid: str
    day: str
    direction: Direction
    at_ms: int


@dataclass(frozen=True)
class CouponUsed:
    mid: str
    coupon: str
    period: str
    at_ms: int


StateUpdate = CheckedIn | Attended | NurseryPassed | CouponUsed


# -- what is still needed: everything else is deleted (privacy at rest) ----------------

NEVER_MS = 2**62  # "keep rows since then": keeps none


@dataclass(frozen=True)
class Retention:
    """The mode state still needed at one moment; the queue deletes the rest.

    Each mode narrows its own part (Mode.retention): check-in keeps the debounce window,
    nursery the current local day (and the double-tap gap across midnight), event the
    events whose window has not ended, coupon the current period of each kind (and the
    double-tap window across a period's end). A mode not configured keeps nothing."""

    checkin_since_ms: int = NEVER_MS
    nursery_day: str | None = None
    nursery_since_ms: int = NEVER_MS
    open_events: frozenset[str] = field(default_factory=frozenset)
    coupon_periods: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    coupon_since_ms: int = NEVER_MS
