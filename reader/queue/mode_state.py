"""The modes' state in SQL: `ModeState` reads for reader/modes, `apply_updates` writes.

The tables are schema.py's (migration 2). Updates run inside EventQueue.append's write
transaction, with the event they belong to: the single-transaction guarantee of the
modes (reader/modes/base.py) is kept here, where the SQL is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from reader.modes.state import (
    Attended,
    CheckedIn,
    CouponLast,
    CouponUsed,
    NurseryLast,
    NurseryPassed,
    StateUpdate,
)


class SqlModeState:
    """ModeState over the queue's connection; only the thread that appends reads it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row = self._db.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def checkin_last(self, mid: str) -> int | None:
        row = self._one("SELECT at_ms FROM mode_checkin_last WHERE mid = ?", (mid,))
        return row[0] if row else None

    def attended(self, event_code: str, mid: str) -> bool:
        return self._one("SELECT 1 FROM mode_event_attendance WHERE event_code = ? AND "
                         "mid = ?", (event_code, mid)) is not None

    def nursery_last(self, mid: str) -> NurseryLast | None:
        row = self._one("SELECT day, direction, at_ms FROM mode_nursery_last WHERE mid = ?",
                        (mid,))
        return NurseryLast(*row) if row else None

    def coupon_last(self, mid: str) -> CouponLast | None:
        row = self._one("SELECT coupon, last_at_ms FROM mode_coupon_uses WHERE mid = ? "
                        "ORDER BY last_at_ms DESC LIMIT 1", (mid,))
        return CouponLast(*row) if row else None

    def coupon_used(self, mid: str, coupon: str, period: str) -> int:
        row = self._one("SELECT used FROM mode_coupon_uses WHERE mid = ? AND coupon = ? "
                        "AND period = ?", (mid, coupon, period))
        return row[0] if row else 0


def apply_updates(db: Database, updates: Iterable[StateUpdate]) -> None:
    """Run the updates' SQL; the caller holds the event's write transaction."""
    for update in updates:
        db.execute(*_sql(update))


def _sql(update: StateUpdate) -> tuple[str, tuple[Any, ...]]:
    match update:
        case CheckedIn(mid, at_ms):
            return ("INSERT INTO mode_checkin_last (mid, at_ms) VALUES (?, ?) "
                    "ON CONFLICT (mid) DO UPDATE SET at_ms = excluded.at_ms", (mid, at_ms))
        case Attended(code, mid, at_ms):
            return ("INSERT INTO mode_event_attendance (event_code, mid, at_ms) "
                    "VALUES (?, ?, ?)", (code, mid, at_ms))
        case NurseryPassed(mid, day, direction, at_ms):
            return ("INSERT INTO mode_nursery_last (mid, day, direction, at_ms) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (mid) DO UPDATE SET day = excluded.day, "
                    "direction = excluded.direction, at_ms = excluded.at_ms",
                    (mid, day, direction, at_ms))
        case CouponUsed(mid, coupon, period, at_ms):
            return ("INSERT INTO mode_coupon_uses (mid, coupon, period, used, last_at_ms) "
                    "VALUES (?, ?, ?, 1, ?) ON CONFLICT (mid, coupon, period) DO UPDATE SET "
                    "used = used + 1, last_at_ms = excluded.last_at_ms",
                    (mid, coupon, period, at_ms))
    raise TypeError(f"not a mode state update: {update!r}")
