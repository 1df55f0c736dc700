"""The terminal's mode, built from its validated settings (reader/modes stays settings-free)."""

from __future__ import annotations

from collections.abc import Callable

from reader.config import Settings
from reader.config.settings import check_mode_can_run
from reader.modes.base import Mode
from reader.modes.checkin import CheckinMode
from reader.modes.coupon import CouponKind, CouponMode
from reader.modes.event import EventMode, Window
from reader.modes.nursery import NurseryMode
from reader.modes.rules import parse_rule
from reader.modes.state import Retention
from reader.modes.watch import WatchMode
from reader.wire.event import Mode as ModeName


def _coupon(s: Settings) -> CouponMode:
    c = s.modes.coupon
    kinds = [CouponKind(k.code, parse_rule(k.rule), k.limit, k.period, k.muni)
             for k in c.kinds]
    return CouponMode(kinds, c.offer, c.debounce_s, s.terminal.timezone, s.terminal.muni)


_BUILDERS: dict[ModeName, Callable[[Settings], Mode]] = {
    ModeName.CHECKIN: lambda s: CheckinMode(s.modes.checkin.debounce_s),
    ModeName.EVENT: lambda s: EventMode(
        [Window(w.code, w.start, w.end, w.facility) for w in s.modes.event.schedule],
        s.terminal.facility),
    ModeName.NURSERY: lambda s: NurseryMode(s.modes.nursery.min_gap_s, s.terminal.timezone,
                                            s.terminal.muni, s.modes.nursery.neighbour_children),
    ModeName.COUPON: _coupon,
    ModeName.WATCH: lambda s: WatchMode(),
}


def state_keepers(settings: Settings) -> list[Mode]:
    """Every mode whose state these settings still need, current mode or not: a switch to
    another mode and back must not reset this month's coupon counts."""
    keepers = [_BUILDERS[name](settings)
               for name in (ModeName.CHECKIN, ModeName.NURSERY, ModeName.COUPON)]
    if settings.modes.event.schedule:  # (an empty one would warn about the facility)
        keepers.append(_BUILDERS[ModeName.EVENT](settings))
    return keepers


def retention(keepers: list[Mode], now_ms: int) -> Retention:
    keep = Retention()
    for mode in keepers:
        keep = mode.retention(keep, now_ms)
    return keep


def build_mode(settings: Settings) -> Mode:
    """The terminal's mode, from validated settings; ConfigError if it cannot work."""
    check_mode_can_run(settings)
    return _BUILDERS[settings.terminal.mode](settings)
