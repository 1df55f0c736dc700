"""Coupons (taxi tickets, hot-spring coupons for the elderly): eligibility and limits.

Each kind (`[[modes.coupon.kinds]]`: code, rule, limit, period) has an eligibility rule
over the card's `attr` (rules.py) and a per-member limit per calendar month or year in
`terminal.timezone`. The kind offered is `[modes.coupon] offer` when set (a taxi office
hands out taxi tickets only); unset, it is the first kind in the configured order the
member is eligible for and still has uses left of.

- no kind's rule holds -> `not_eligible`, detail {}
- eligible, but every such kind is used up this period -> `not_eligible`,
  detail {"coupon": <first eligible kind>, "remaining": 0}
- else accepted, detail {"coupon", "remaining"} (uses left AFTER this one), "coupon" sound
- an accepted coupon tap of the same member within `debounce_s` of the last one ->
  `duplicate`: a double tap must not spend two tickets.

Counting is local to this terminal (docs/modes.md says what two offline terminals do).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..config import CouponKind, CouponSettings
from ..record import CardRecord
from .base import Decision, Mode, local_time, one, refuse, within
from .rules import Rule, parse_rule


class CouponMode(Mode):
    name = "coupon"

    def __init__(self, settings: CouponSettings, timezone: str) -> None:
        offered = [k for k in settings.kinds if settings.offer in (None, k.code)]
        self.kinds: list[tuple[CouponKind, Rule]] = [(k, parse_rule(k.rule)) for k in offered]
        self.debounce_s = settings.debounce_s
        self.zone = ZoneInfo(timezone)

    def decide(self, db: Database, record: CardRecord, at_ms: int) -> Decision:
        last = one(db, "SELECT coupon, last_at_ms FROM mode_coupon_uses WHERE mid = ? "
                       "ORDER BY last_at_ms DESC LIMIT 1", (record.mid,))
        if last is not None and within(at_ms, last[1], self.debounce_s):
            kind = next((k for k, _ in self.kinds if k.code == last[0]), None)
            detail = {"coupon": last[0]}
            if kind is not None:
                detail["remaining"] = self._remaining(db, record.mid, kind, at_ms)
            return refuse("duplicate", "duplicate", **detail)
        eligible = [k for k, rule in self.kinds if rule.holds(record.attr)]
        if not eligible:
            return refuse("not_eligible")
        for kind in eligible:
            remaining = self._remaining(db, record.mid, kind, at_ms)
            if remaining > 0:
                return Decision(None, {"coupon": kind.code, "remaining": remaining - 1},
                                "coupon", [self._use(record.mid, kind, at_ms)])
        return refuse("not_eligible", coupon=eligible[0].code, remaining=0)

    def period(self, kind: CouponKind, at_ms: int) -> str:
        """The calendar period of `at_ms` for this kind: "2026-11" or "2026"."""
        local = local_time(at_ms, self.zone)
        return f"{local.year:04d}-{local.month:02d}" if kind.period == "month" else (
            f"{local.year:04d}")

    def _remaining(self, db: Database, mid: str, kind: CouponKind, at_ms: int) -> int:
        used = one(db, "SELECT used FROM mode_coupon_uses WHERE mid = ? AND coupon = ? "
                       "AND period = ?", (mid, kind.code, self.period(kind, at_ms)))
        # max(): a limit lowered by a new config leaves 0, never a negative count.
        return max(0, kind.limit - (used[0] if used else 0))

    def _use(self, mid: str, kind: CouponKind, at_ms: int) -> tuple[str, tuple]:
        return ("INSERT INTO mode_coupon_uses (mid, coupon, period, used, last_at_ms) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT (mid, coupon, period) DO UPDATE SET "
                "used = used + 1, last_at_ms = excluded.last_at_ms",
                (mid, kind.code, self.period(kind, at_ms), at_ms))
