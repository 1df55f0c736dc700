"""What arrives from a terminal, checked before it reaches the database. Pure: bytes in,
rows out (no I/O), so the intake's threads only move what this module decided.

An event the city will never store (malformed) is `rejected` in the ack (mqtt-v1 §3):
the terminal sets it aside instead of sending it again forever. The checks here are
those of reader.wire (the one wire model) plus what PostgreSQL needs to store the row
(a time it can file, text without NUL), so a stored batch never fails on its data.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from city.db import StoredEvent, TerminalState
from reader.wire.messages import event_error, parse_batch

# PostgreSQL's timestamptz covers 4713 BC..294276 AD; a terminal's clock is between these.
_EARLIEST_MS = 0
_LATEST_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


@dataclass(frozen=True)
class CheckedBatch:
    batch: str
    good: list[StoredEvent]
    rejected: list[tuple[str, str]]  # (event id, error) for the ack


def check_batch(tid: str, payload: bytes) -> CheckedBatch:
    """The events of a §2 batch sent on `tid`'s topic; SyncError when it is no batch at
    all (then no ack can name anything: it is dropped)."""
    batch = parse_batch(payload)
    # jsonb and text refuse NUL: the rare batch that has one is checked event by event.
    has_nul = b"\\u0000" in payload
    good: list[StoredEvent] = []
    rejected: list[tuple[str, str]] = []
    for event in batch.events:
        # The topic's tid is the authenticated one (broker ACL): a payload claiming
        # another terminal is refused rather than filed under the wrong one.
        error = event_error(event) or (None if batch.tid == tid else "schema")
        row = _row(event, has_nul) if error is None else None
        if row is not None:
            good.append(row)
        elif isinstance(event, dict) and isinstance(event.get("id"), str):
            rejected.append((event["id"], error or "schema"))
    return CheckedBatch(batch.batch, good, rejected)


def _row(event: dict[str, Any], has_nul: bool) -> StoredEvent | None:
    at_ms, facility, reason, card = (event["at_ms"], event["facility"], event["reason"],
                                     event["card"])
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) \
            or not _EARLIEST_MS <= at_ms <= _LATEST_MS:
        return None
    if not isinstance(facility, str) or not (reason is None or isinstance(reason, str)):
        return None
    if not (card is None or isinstance(card, dict)):
        return None
    if has_nul and "\\u0000" in json.dumps(event):
        return None
    mid = card.get("mid") if card else None
    return StoredEvent(
        id=event["id"], seq=event["seq"],
        at=dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC), mode=event["mode"],
        facility=facility, result=event["result"], reason=reason,
        member_id=mid if isinstance(mid, str) else None, body=event)


def terminal_state(muni: str, tid: str, payload: bytes,
                   received_at: dt.datetime) -> TerminalState | None:
    """A §4 status or the Will as the terminals table keeps it; None when it is neither
    (a status claiming another terminal included). Unknown keys are kept in `status`."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("tid") != tid \
            or doc.get("state") not in ("online", "offline"):
        return None
    if "\\u0000" in json.dumps(doc):
        return None
    if doc["state"] == "offline":
        return TerminalState(muni, tid, False, doc, received_at)
    queue, versions, cert = (_table(doc, "queue"), _table(doc, "versions"),
                             _table(doc, "cert"))
    alarms = doc["alarms"] if isinstance(doc.get("alarms"), list) else []
    pending = queue.get("pending")
    app = versions.get("app")
    return TerminalState(
        muni, tid, True, doc, received_at,
        pending=pending if isinstance(pending, int) and not isinstance(pending, bool) else None,
        oldest_unacked=_time(queue.get("oldest_at")),
        app_version=app if isinstance(app, str) else None,
        bundle_versions={k: v for k, v in versions.items() if k != "app"},
        alarms=tuple(str(a) for a in alarms),
        cert_not_after=_time(cert.get("not_after")))


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time of the status (`...Z`), None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
