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
from datetime import UTC, datetime, timedelta

from sqlite_utils import Database

from ..config import EventSettings
from ..logs import fields
from ..record import CardRecord
from .base import Decision, Mode, one, refuse

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventMode(Mode):
    name = "event"

    def __init__(self, settings: EventSettings, facility: str) -> None:
        self.windows: list[tuple[int, int, str]] = [
            (_ms(w.start), _ms(w.end), w.code) for w in settings.schedule
            if w.facility in (None, facility)]
        if not self.windows:
            log.warning("event mode with no event for this facility: every tap will be "
                        "outside_schedule", **fields(facility=facility))

    def decide(self, db: Database, record: CardRecord, at_ms: int) -> Decision:
        code = next((c for start, end, c in self.windows if start <= at_ms < end), None)
        if code is None:
            return refuse("outside_schedule")
        seen = one(db, "SELECT 1 FROM mode_event_attendance WHERE event_code = ? AND mid = ?",
                   (code, record.mid))
        if seen:
            return refuse("duplicate", "duplicate", event_code=code)
        return Decision(None, {"event_code": code}, "accepted", [(
            "INSERT INTO mode_event_attendance (event_code, mid, at_ms) VALUES (?, ?, ?)",
            (code, record.mid, at_ms))])


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike float timestamps
