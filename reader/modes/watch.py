"""Youth watch (cram schools and the like): every accepted tap, sent at once.

The guardian service must learn of a child's tap within seconds when the terminal is
online, so the event is not held to fill a batch (`send_now`). No debounce: two taps are
two sightings, and a guardian would rather see both. No state, so nothing to migrate.
"""

from __future__ import annotations

from sqlite_utils import Database

from ..record import CardRecord
from .base import Decision, Mode


class WatchMode(Mode):
    name = "watch"

    def decide(self, db: Database, record: CardRecord, at_ms: int) -> Decision:
        return Decision(None, {}, "accepted", [], send_now=True)
