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

from collections.abc import Collection
from dataclasses import replace
from zoneinfo import ZoneInfo

from reader.card.reasons import Reason
from reader.card.record import CardRecord
from reader.modes.base import Decision, Mode, Sound, accept, local_time, refuse, within
from reader.modes.state import Direction, ModeState, NurseryPassed, Retention
from reader.wire.event import Mode as ModeName


class NurseryMode(Mode):
    name = ModeName.NURSERY

    def __init__(self, min_gap_s: int, timezone: str, home_muni: str,
                 neighbour_children: Collection[str] = ()) -> None:
        self.min_gap_s = min_gap_s
        self.zone = ZoneInfo(timezone)
        self.home_muni = home_muni
        # "<muni>:<mid>" of the neighbouring towns' children this nursery has.
        self.neighbour_children = frozenset(neighbour_children)

    def decide(self, state: ModeState, record: CardRecord, at_ms: int) -> Decision:
        if record.muni != self.home_muni and record.mid not in self.neighbour_children:
            # A child of another town passes only at a nursery that has that child. (The
            # daemon hands neighbours' records in as `<muni>:<mid>`: modes/base.resident.)
            return refuse(Reason.NOT_ELIGIBLE)
        last = state.nursery_last(record.mid)
        if last is not None and within(at_ms, last.at_ms, self.min_gap_s):
            return refuse(Reason.DUPLICATE, Sound.DUPLICATE, direction=last.direction)
        day = local_time(at_ms, self.zone).date().isoformat()
        leaving = last is not None and last.day == day and last.direction == "arrival"
        direction: Direction = "departure" if leaving else "arrival"
        return accept(Sound(direction), NurseryPassed(record.mid, day, direction, at_ms),
                      direction=direction)

    def retention(self, keep: Retention, now_ms: int) -> Retention:
        return replace(keep, nursery_day=local_time(now_ms, self.zone).date().isoformat(),
                       nursery_since_ms=now_ms - self.min_gap_s * 1000)
