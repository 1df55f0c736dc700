"""The modes' state in SQL: `ModeState` reads for reader/modes, `apply` writes, `prune`
forgets; `clock`/`store_clock` keep the modes' own timeline (reader/modes/clock.py).

The tables are schema.py's (migrations 2 and 4). Updates run inside EventQueue.append's
write transaction, with the event they belong to: the single-transaction guarantee of the
modes (reader/modes/base.py) is kept here, where the SQL is.

Privacy at rest. Member ids are stored as their pseudonym (reader/queue/pseudonym.py),
never in clear, and a row is kept only while its mode needs it (`prune`, with the
`Retention` the modes compute): a stolen SD card shows neither who came nor, after the
window, that anyone did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from sqlite_utils import Database

from reader.modes.clock import Anchor, ModeTime, Reading, advance, needs_floor
from reader.modes.state import (
    Attended,
    CheckedIn,
    CouponLast,
    CouponUsed,
    NurseryLast,
    NurseryPassed,
    Retention,
    StateUpdate,
)
from reader.queue.pseudonym import Pseudonyms
from reader.system.logs import fields
from reader.wire.event import rfc3339_ms

log = logging.getLogger(__name__)


class SqlModeState:
    """ModeState over the queue's connection; only the thread that appends reads it.

    `pseudonyms` is called on first use: a queue that records no tap (the sync thread,
    the technician's CLI) never needs the secret."""

    def __init__(self, db: Database, pseudonyms: Callable[[], Pseudonyms]) -> None:
        self._db = db
        self._load = pseudonyms
        self._pseudonyms: Pseudonyms | None = None

    def pseudonym(self, mid: str) -> str:
        if self._pseudonyms is None:
            self._pseudonyms = self._load()
        return self._pseudonyms.of(mid)

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row = self._db.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def checkin_last(self, mid: str) -> int | None:
        row = self._one("SELECT at_ms FROM mode_checkin_last WHERE mid = ?",
                        (self.pseudonym(mid),))
        return row[0] if row else None

    def attended(self, event_code: str, mid: str) -> bool:
        return self._one("SELECT 1 FROM mode_event_attendance WHERE event_code = ? AND "
                         "mid = ?", (event_code, self.pseudonym(mid))) is not None

    def nursery_last(self, mid: str) -> NurseryLast | None:
        row = self._one("SELECT day, direction, at_ms FROM mode_nursery_last WHERE mid = ?",
                        (self.pseudonym(mid),))
        return NurseryLast(*row) if row else None

    def coupon_last(self, mid: str) -> CouponLast | None:
        row = self._one("SELECT coupon, last_at_ms FROM mode_coupon_uses WHERE mid = ? "
                        "ORDER BY last_at_ms DESC LIMIT 1", (self.pseudonym(mid),))
        return CouponLast(*row) if row else None

    def coupon_used(self, mid: str, coupon: str, period: str) -> int:
        row = self._one("SELECT used FROM mode_coupon_uses WHERE mid = ? AND coupon = ? "
                        "AND period = ?", (self.pseudonym(mid), coupon, period))
        return row[0] if row else 0

    def clock(self) -> Anchor | None:
        """Where the modes' timeline was last set (None: a new database)."""
        row = self._one("SELECT boot_id, mono_ns, mode_ms, synced, off_ms FROM mode_clock "
                        "WHERE id = 1", ())
        return Anchor(row[0], row[1], row[2], bool(row[3]), row[4]) if row else None

    def store_clock(self, anchor: Anchor) -> None:
        """The caller holds the write transaction of the tap or prune that read it."""
        self._db.execute(
            "INSERT INTO mode_clock (id, boot_id, mono_ns, mode_ms, synced, off_ms) "
            "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET boot_id = "
            "excluded.boot_id, mono_ns = excluded.mono_ns, mode_ms = excluded.mode_ms, "
            "synced = excluded.synced, off_ms = excluded.off_ms",
            (anchor.boot_id, anchor.mono_ns, anchor.mode_ms, int(anchor.synced),
             anchor.off_ms))

    def step_clock(self, now: Reading) -> ModeTime:
        """The modes' time at `now`, stored; a new jump raises the alarm (and a log line).
        The caller holds the write transaction of the tap or prune that reads it."""
        anchor = self.clock()
        time_ = advance(anchor, now, self._floor() if needs_floor(anchor, now) else None)
        if time_.store:
            self.store_clock(time_.anchor)
        if time_.new_jump:
            # A wire value (status, MQTT): English in any locale, like every alarm.
            alarm = (f"clock jumped: the wall clock reads {rfc3339_ms(now.wall_ms)}, "
                     f"{time_.off_ms / 1000:+.0f} s from the modes' clock; taps are decided "
                     "on the modes' clock until the wall clock agrees again (check NTP: "
                     "timedatectl)")
            self._db.execute("INSERT INTO alarms (raised_at, message) VALUES (?, ?)",
                             (rfc3339_ms(), alarm))
            log.warning("clock jumped; modes keep their own clock", **fields(
                wall=rfc3339_ms(now.wall_ms), modes=rfc3339_ms(time_.at_ms),
                off_s=round(time_.off_ms / 1000), synced=now.synced))
        return time_

    def _floor(self) -> int | None:
        """The newest time the mode state holds: the modes' clock never goes below it."""
        row = self._one(
            "SELECT MAX(t) FROM (SELECT MAX(at_ms) AS t FROM mode_checkin_last UNION ALL "
            "SELECT MAX(at_ms) FROM mode_event_attendance UNION ALL SELECT MAX(at_ms) FROM "
            "mode_nursery_last UNION ALL SELECT MAX(last_at_ms) FROM mode_coupon_uses)", ())
        return row[0] if row else None

    def apply(self, updates: Iterable[StateUpdate]) -> None:
        """Run the updates' SQL; the caller holds the event's write transaction."""
        for update in updates:
            self._db.execute(*self._sql(update))

    def prune(self, keep: Callable[[int], Retention], now: Reading) -> int:
        """Delete every row no mode needs at the modes' time `now`; the caller holds a
        write transaction. The number of rows deleted."""
        time_ = self.step_clock(now)
        pruned = self._delete(keep(time_.at_ms))
        if pruned:  # what was forgotten, was forgotten as of now: the floor after a reboot
            self.store_clock(replace(time_.anchor, mono_ns=now.mono_ns, mode_ms=time_.at_ms))
        return pruned

    def _delete(self, keep: Retention) -> int:
        db = self._db
        before = db.conn.total_changes
        db.execute("DELETE FROM mode_checkin_last WHERE at_ms < ?", (keep.checkin_since_ms,))
        db.execute("DELETE FROM mode_nursery_last WHERE day IS NOT ? AND at_ms < ?",
                   (keep.nursery_day, keep.nursery_since_ms))
        codes = sorted(keep.open_events)
        db.execute("DELETE FROM mode_event_attendance WHERE event_code NOT IN "
                   f"({', '.join('?' * len(codes))})", tuple(codes))
        periods = sorted(keep.coupon_periods)
        current = " OR ".join("(coupon = ? AND period = ?)" for _ in periods) or "0"
        db.execute(f"DELETE FROM mode_coupon_uses WHERE NOT ({current}) AND last_at_ms < ?",
                   (*(x for pair in periods for x in pair), keep.coupon_since_ms))
        return db.conn.total_changes - before

    def _sql(self, update: StateUpdate) -> tuple[str, tuple[Any, ...]]:
        match update:
            case CheckedIn(mid, at_ms):
                return ("INSERT INTO mode_checkin_last (mid, at_ms) VALUES (?, ?) "
                        "ON CONFLICT (mid) DO UPDATE SET at_ms = excluded.at_ms",
                        (self.pseudonym(mid), at_ms))
            case Attended(code, mid, at_ms):
                return ("INSERT INTO mode_event_attendance (event_code, mid, at_ms) "
                        "VALUES (?, ?, ?)", (code, self.pseudonym(mid), at_ms))
            case NurseryPassed(mid, day, direction, at_ms):
                return ("INSERT INTO mode_nursery_last (mid, day, direction, at_ms) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (mid) DO UPDATE SET "
                        "day = excluded.day, direction = excluded.direction, "
                        "at_ms = excluded.at_ms", (self.pseudonym(mid), day, direction, at_ms))
            case CouponUsed(mid, coupon, period, at_ms):
                return ("INSERT INTO mode_coupon_uses (mid, coupon, period, used, last_at_ms) "
                        "VALUES (?, ?, ?, 1, ?) ON CONFLICT (mid, coupon, period) DO UPDATE "
                        "SET used = used + 1, last_at_ms = excluded.last_at_ms",
                        (self.pseudonym(mid), coupon, period, at_ms))
        raise TypeError(f"not a mode state update: {update!r}")
