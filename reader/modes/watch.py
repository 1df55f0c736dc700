"""Youth watch (cram schools and the like): every accepted tap, sent at once.

The guardian service must learn of a child's tap within seconds when the terminal is
online, so the event is not held to fill a batch (`send_now`). No debounce: two taps are
two sightings, and a guardian would rather see both. No state, so nothing to migrate.
"""

from __future__ import annotations

from reader.card.record import CardRecord
from reader.modes.base import Decision, Mode, Sound, accept
from reader.modes.state import ModeState
from reader.wire.event import Mode as ModeName


class WatchMode(Mode):
    name = ModeName.WATCH

    def decide(self, state: ModeState, record: CardRecord, at_ms: int) -> Decision:
        return accept(Sound.ACCEPTED, send_now=True)
