"""What a tap means here: check 9 of card-ap-v1 §4, one mode per terminal.

`build_mode(settings)` gives the terminal's `Mode` (checkin, event, nursery, coupon,
watch: one module each), `profile_for(settings)` the AP profile its taps are read with.
A mode's `decide(db, record, at_ms)` returns a `Decision` (reason, detail, sound, the
state writes to commit with the event). See docs/modes.md.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..errors import ConfigError
from .base import Decision, Mode
from .checkin import CheckinMode
from .coupon import CouponMode
from .event import EventMode
from .nursery import NurseryMode
from .profiles import profile_for
from .watch import WatchMode

_BUILDERS: dict[str, Callable[[Settings], Mode]] = {
    "checkin": lambda s: CheckinMode(s.modes.checkin),
    "event": lambda s: EventMode(s.modes.event, s.terminal.facility),
    "nursery": lambda s: NurseryMode(s.modes.nursery, s.terminal.timezone),
    "coupon": lambda s: CouponMode(s.modes.coupon, s.terminal.timezone),
    "watch": lambda s: WatchMode(),
}


def build_mode(settings: Settings) -> Mode:
    """The terminal's mode, from validated settings; ConfigError if it cannot work."""
    mode = settings.terminal.mode
    if mode == "coupon" and not settings.modes.coupon.kinds:
        raise ConfigError("setting modes.coupon.kinds is empty: a coupon terminal needs at "
                          "least one [[modes.coupon.kinds]] (code, rule, limit, period)")
    return _BUILDERS[mode](settings)


__all__ = ["Decision", "Mode", "build_mode", "profile_for"]
