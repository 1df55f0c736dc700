"""Facility check-in (facility use, health salon, points): one accepted tap per window.

A member who taps twice within `[modes.checkin] debounce_s` hears "already recorded"
(`duplicate`) and earns no double points. The window opens at the last ACCEPTED tap: a
duplicate does not extend it, so a member tapping every 30 s with a 60 s window gets
one accepted tap per minute, not one ever.
"""

from __future__ import annotations

from dataclasses import replace

from reader.card.reasons import Reason
from reader.card.record import CardRecord
from reader.modes.base import Decision, Mode, Sound, accept, refuse, within
from reader.modes.state import CheckedIn, ModeState, Retention
from reader.wire.event import Mode as ModeName


class CheckinMode(Mode):
    name = ModeName.CHECKIN

    def __init__(self, debounce_s: int) -> None:
        self.debounce_s = debounce_s

    def decide(self, state: ModeState, record: CardRecord, at_ms: int) -> Decision:
        if within(at_ms, state.checkin_last(record.mid), self.debounce_s):
            return refuse(Reason.DUPLICATE, Sound.DUPLICATE)
        return accept(Sound.ACCEPTED, CheckedIn(record.mid, at_ms))

    def retention(self, keep: Retention, now_ms: int) -> Retention:
        return replace(keep, checkin_since_ms=now_ms - self.debounce_s * 1000)
