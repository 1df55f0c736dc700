"""Shared helpers for the queue tests: realistic mqtt-v1 §2 events and an append shortcut."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from typing import Any

from reader.queue import EventQueue
from reader.system.uuid7 import uuid7_str


def b64url(n: int) -> str:
    return base64.urlsafe_b64encode(os.urandom(n)).rstrip(b"=").decode()


def make_event(n: int = 0, *, detail: dict[str, Any] | None = None,
               result: str = "accepted") -> dict[str, Any]:
    """A tap event with every mqtt-v1 §2 field except seq."""
    now = datetime.now(UTC)
    return {
        "id": uuid7_str(),
        "at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "at_ms": int(now.timestamp() * 1000),
        "clock": "synced",
        "mode": "checkin",
        "facility": "sukumo-library",
        "result": result,
        "reason": None if result == "accepted" else "revoked",
        "card": {"muni": "392081", "mid": f"M{n:08d}", "sn": "04a1b2c3d4e5f607",
                 "ap": "F053554B554D4F494401"},
        "proof": {"nonce": b64url(16), "sig": b64url(64)},
        "detail": detail if detail is not None else {},
    }


def record(queue: EventQueue, event: dict[str, Any] | None = None, **kw: Any) -> dict:
    return queue.append(event or make_event(), boot_id="test-boot", mono_ns=123,
                        clock_synced=True, **kw)
