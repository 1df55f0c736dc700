"""Shared helpers for the mode tests: a terminal reduced to its check 9 and its queue.

`ModeTerminal.tap` does what the daemon does after checks 1-8 passed: the mode decides
on the queue's database, the event is recorded with the mode's state writes in the same
transaction, and the sound is returned (the tests assert it instead of hearing it).
The decision is made inside the queue's write transaction, on the modes' clock
(reader/modes/clock.py), as in the daemon. `restart()` closes the queue and builds
everything again from the file, like a daemon restart. Card records are built directly
(checks 1-8 are tested elsewhere); times are given as Asia/Tokyo wall clock, so no test
sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reader.card.record import CardRecord
from reader.config import Settings, load_settings
from reader.modes import Decision, ModeState
from reader.modes.base import resident
from reader.modes.clock import ModeTime, Reading
from reader.queue import EventQueue
from reader.queue.event_queue import Recording
from reader.system.uuid7 import uuid7_str
from reader.terminal.policy import build_mode
from reader.wire.event import CardRef, Event

JST = ZoneInfo("Asia/Tokyo")


def jst(text: str) -> int:
    """'2026-12-01 08:00:00' in Asia/Tokyo -> Unix ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=JST).timestamp() * 1000)


def card(mid: str, ap: str = "member", muni: str = "392081",
         **attr: bool | int | str) -> CardRecord:
    return CardRecord(v=1, muni=muni, ap=ap, mid=mid, sn=bytes.fromhex("0102030405060708"),
                      pk=b"\x04" + bytes(64), iat=0, exp=2**32, attr=dict(attr))


@dataclass
class Tap:
    decision: Decision
    event: Event

    @property
    def verdict(self) -> tuple[str | None, str, dict[str, Any]]:
        return self.decision.reason, self.decision.sound, self.decision.detail


class ModeTerminal:
    def __init__(self, state_dir: Path, **overrides: Any) -> None:
        overrides.setdefault("paths", {})["state_dir"] = state_dir
        self.settings: Settings = load_settings(None, **overrides)
        self._open()

    def _open(self) -> None:
        self.queue = EventQueue.open(self.settings.paths.database)
        self.state: ModeState = self.queue.mode_state  # what the daemon hands to decide()
        self.mode = build_mode(self.settings)

    def restart(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        self.queue.close()

    def tap(self, record: CardRecord, at_ms: int, *, mono_ms: int | None = None,
            boot_id: str = "test-boot") -> Tap:
        """A tap at wall clock `at_ms`; the monotonic clock reads `mono_ms` (default: the
        same, i.e. a wall clock that never stepped), as the daemon records one."""
        decided: list[Decision] = []

        def decide(state: ModeState, now: ModeTime) -> Recording:
            # As the daemon does: a neighbouring town's resident is <muni>:<mid> to modes.
            decision = self.mode.decide(state, resident(record, self.settings.terminal.muni),
                                        now.at_ms)
            decided.append(decision)
            event = Event(id=uuid7_str(), at_ms=at_ms, clock_synced=not now.doubted,
                          mode=self.mode.name, facility=self.settings.terminal.facility,
                          reason=decision.reason, card=CardRef.of(record),
                          detail=decision.detail)
            return Recording(event, decision.updates, decision.send_now)

        mono_ns = (at_ms if mono_ms is None else mono_ms) * 1_000_000
        stored = self.queue.record(decide, Reading(at_ms, boot_id, mono_ns, True))
        return Tap(decided[0], stored)

    def recorded(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        """(result, reason, detail) of every event in the queue, in seq order."""
        return [(e["result"], e["reason"], e["detail"]) for e in self.queue.iter_events()]
