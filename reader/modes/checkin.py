"""Facility check-in (facility use, health salon, points): one accepted tap per window.

A member who taps twice within `[modes.checkin] debounce_s` hears "already recorded"
(`duplicate`) and earns no double points. The window opens at the last ACCEPTED tap: a
duplicate does not extend it, so a member tapping every 30 s with a 60 s window gets
one accepted tap per minute, not one ever.
"""

from __future__ import annotations

from sqlite_utils import Database

from ..config import CheckinSettings
from ..record import CardRecord
from .base import Decision, Mode, one, refuse, within


class CheckinMode(Mode):
    name = "checkin"

    def __init__(self, settings: CheckinSettings) -> None:
        self.debounce_s = settings.debounce_s

    def decide(self, db: Database, record: CardRecord, at_ms: int) -> Decision:
        last = one(db, "SELECT at_ms FROM mode_checkin_last WHERE mid = ?", (record.mid,))
        if within(at_ms, last[0] if last else None, self.debounce_s):
            return refuse("duplicate", "duplicate")
        return Decision(None, {}, "accepted", [(
            "INSERT INTO mode_checkin_last (mid, at_ms) VALUES (?, ?) "
            "ON CONFLICT (mid) DO UPDATE SET at_ms = excluded.at_ms", (record.mid, at_ms))])
