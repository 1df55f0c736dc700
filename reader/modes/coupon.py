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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal
from zoneinfo import ZoneInfo

from reader.card.reasons import Reason
from reader.card.record import CardRecord
from reader.modes.base import Decision, Mode, Sound, accept, local_time, refuse, within
from reader.modes.rules import Rule
from reader.modes.state import CouponUsed, ModeState, Retention
from reader.wire.event import Mode as ModeName


@dataclass(frozen=True)
class CouponKind:
    """One kind of coupon this terminal hands out (`[[modes.coupon.kinds]]`, parsed)."""

    code: str
    rule: Rule
    limit: int  # uses per member per period
    period: Literal["month", "year"] = "month"
    muni: str | None = None  # the town that pays: its residents only (None: the home town)


class CouponMode(Mode):
    name = ModeName.COUPON

    def __init__(self, kinds: Sequence[CouponKind], offer: str | None, debounce_s: int,
                 timezone: str, home_muni: str) -> None:
        self.all_kinds = list(kinds)  # counts of kinds not offered here still hold
        self.kinds = [k for k in kinds if offer in (None, k.code)]
        self.debounce_s = debounce_s
        self.zone = ZoneInfo(timezone)
        self.home_muni = home_muni

    def decide(self, state: ModeState, record: CardRecord, at_ms: int) -> Decision:
        last = state.coupon_last(record.mid)
        if last is not None and within(at_ms, last.at_ms, self.debounce_s):
            kind = next((k for k in self.kinds if k.code == last.coupon), None)
            if kind is None:
                return refuse(Reason.DUPLICATE, Sound.DUPLICATE, coupon=last.coupon)
            return refuse(Reason.DUPLICATE, Sound.DUPLICATE, coupon=last.coupon,
                          remaining=self._remaining(state, record.mid, kind, at_ms))
        # A kind is paid by one town and granted to its residents only: a rule of town A
        # never grants a resident of B, whatever B's card says.
        eligible = [k for k in self.kinds if (k.muni or self.home_muni) == record.muni
                    and k.rule.holds(record.attr)]
        if not eligible:
            return refuse(Reason.NOT_ELIGIBLE)
        for kind in eligible:
            remaining = self._remaining(state, record.mid, kind, at_ms)
            if remaining > 0:
                used = CouponUsed(record.mid, kind.code, self.period(kind, at_ms), at_ms)
                return accept(Sound.COUPON, used, coupon=kind.code, remaining=remaining - 1)
        return refuse(Reason.NOT_ELIGIBLE, coupon=eligible[0].code, remaining=0)

    def retention(self, keep: Retention, now_ms: int) -> Retention:
        return replace(keep, coupon_periods=frozenset(
            (k.code, self.period(k, now_ms)) for k in self.all_kinds),
            coupon_since_ms=now_ms - self.debounce_s * 1000)

    def period(self, kind: CouponKind, at_ms: int) -> str:
        """The calendar period of `at_ms` for this kind: "2026-11" or "2026"."""
        local = local_time(at_ms, self.zone)
        return f"{local.year:04d}-{local.month:02d}" if kind.period == "month" else (
            f"{local.year:04d}")

    def _remaining(self, state: ModeState, mid: str, kind: CouponKind, at_ms: int) -> int:
        used = state.coupon_used(mid, kind.code, self.period(kind, at_ms))
        # max(): a limit lowered by a new config leaves 0, never a negative count.
        return max(0, kind.limit - used)
