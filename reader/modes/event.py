"""City events: a tap counts for the event whose window holds it, once per member.

The schedule (`[[modes.event.schedule]]`: code, start, end, facility) is validated at
start-up: windows at the same facility never overlap, so a tap belongs to at most one
event. A window is [start, end). Windows for other facilities are ignored, which lets
the city push one schedule to every terminal. Outside every window -> `outside_schedule`.
A second accepted tap of the same member for the same event is `duplicate`: attendance
is counted once (a member who leaves and comes back is still one attendee).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from reader.card.reasons import Reason
from reader.card.record import CardRecord
from reader.modes.base import Decision, Mode, Sound, accept, refuse
from reader.modes.state import Attended, ModeState, Retention
from reader.system.logs import fields
from reader.wire.event import Mode as ModeName

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """One event of the schedule: [start, end) at a facility (None: at every facility)."""

    code: str
    start: datetime  # aware
    end: datetime
    facility: str | None = None


class EventMode(Mode):
    name = ModeName.EVENT

    def __init__(self, schedule: Sequence[Window], facility: str) -> None:
        self.windows: list[tuple[int, int, str]] = [
            (_ms(w.start), _ms(w.end), w.code) for w in schedule
            if w.facility in (None, facility)]
        if not self.windows:
            log.warning("event mode with no event for this facility: every tap will be "
                        "outside_schedule", **fields(facility=facility))

    def decide(self, state: ModeState, record: CardRecord, at_ms: int) -> Decision:
        code = next((c for start, end, c in self.windows if start <= at_ms < end), None)
        if code is None:
            return refuse(Reason.OUTSIDE_SCHEDULE)
        if state.attended(code, record.mid):
            return refuse(Reason.DUPLICATE, Sound.DUPLICATE, event_code=code)
        return accept(Sound.ACCEPTED, Attended(code, record.mid, at_ms), event_code=code)

    def retention(self, keep: Retention, now_ms: int) -> Retention:
        # Once an event's window has ended no tap can count for it again.
        return replace(keep, open_events=frozenset(c for _, end, c in self.windows
                                                   if end > now_ms))


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike float timestamps
