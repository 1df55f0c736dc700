"""Nursery arrival / departure (登降園): small children tap their own cards.

Per child per local day (`terminal.timezone`, Asia/Tokyo by default): the first accepted
tap is the arrival, the next is the departure, a further one is a new arrival (a child
who comes back), and so on. After any accepted tap, taps of the same child closer than
`[modes.nursery] min_gap_s` are `duplicate`: a child who taps twice at the door neither
leaves at once nor arrives twice. The day is the tap's local date, so a child who never
tapped out yesterday arrives today (not "departs"); the gap, being about double taps,
holds across midnight too.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..config import NurserySettings
from ..record import CardRecord
from .base import Decision, Mode, local_time, one, refuse, within


class NurseryMode(Mode):
    name = "nursery"

    def __init__(self, settings: NurserySettings, timezone: str) -> None:
        self.min_gap_s = settings.min_gap_s
        self.zone = ZoneInfo(timezone)

    def decide(self, db: Database, record: CardRecord, at_ms: int) -> Decision:
        last = one(db, "SELECT day, direction, at_ms FROM mode_nursery_last WHERE mid = ?",
                   (record.mid,))
        if last is not None and within(at_ms, last[2], self.min_gap_s):
            return refuse("duplicate", "duplicate", direction=last[1])
        day = local_time(at_ms, self.zone).date().isoformat()
        leaving = last is not None and last[0] == day and last[1] == "arrival"
        direction = "departure" if leaving else "arrival"
        return Decision(None, {"direction": direction}, direction, [(
            "INSERT INTO mode_nursery_last (mid, day, direction, at_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (mid) DO UPDATE SET day = excluded.day, "
            "direction = excluded.direction, at_ms = excluded.at_ms",
            (record.mid, day, direction, at_ms))])
