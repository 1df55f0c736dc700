"""Shared helpers for the queue tests: realistic mqtt-v1 §2 events and an append shortcut."""

from __future__ import annotations

import os
import time
from typing import Any

from reader.queue import EventQueue
from reader.system.uuid7 import uuid7_str
from reader.wire.event import CardRef, Event, Mode, Proof, Reason


def make_event(n: int = 0, *, detail: dict[str, Any] | None = None,
               result: str = "accepted") -> Event:
    """A tap event with every mqtt-v1 §2 field except seq."""
    return Event(
        id=uuid7_str(), at_ms=time.time_ns() // 1_000_000, clock_synced=True,
        mode=Mode.CHECKIN, facility="sukumo-library",
        reason=None if result == "accepted" else Reason.REVOKED,
        card=CardRef("392081", f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
        proof=Proof.of(os.urandom(16), os.urandom(64)),
        detail=detail if detail is not None else {})


def record(queue: EventQueue, event: Event | None = None, **kw: Any) -> Event:
    return queue.append(event or make_event(), boot_id="test-boot", mono_ns=123, **kw)
