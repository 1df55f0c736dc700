"""mqtt-v1 payloads as pure functions: batch (§2), ack (§3), status and Will (§4).

Both sides use them: the terminal builds batches and status and parses acks; the reference
city receiver parses batches and builds acks. No I/O here, so tests are tables of bytes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import SyncError
from ..events import rfc3339_ms

VERSION = 1
MODES = ("checkin", "event", "nursery", "coupon", "watch")
_EVENT_FIELDS = ("id", "seq", "at", "at_ms", "clock", "mode", "facility", "result", "reason",
                 "card", "proof", "detail")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# -- §2 batch ----------------------------------------------------------------------------

def build_batch(tid: str, batch_id: str, events: list[dict]) -> bytes:
    return _dumps({"v": VERSION, "tid": tid, "batch": batch_id, "events": events})


@dataclass(frozen=True)
class BatchIn:
    tid: str
    batch: str
    events: list[dict]


def parse_batch(payload: bytes) -> BatchIn:
    """The envelope of a received batch; SyncError when it is not one (no ack is possible).
    Events are checked one by one with `event_error`, so one bad event does not sink a batch."""
    doc = _json_object(payload, "batch")
    if doc.get("v") != VERSION:
        raise SyncError(f"batch: unsupported version {doc.get('v')!r}")
    tid, batch, events = doc.get("tid"), doc.get("batch"), doc.get("events")
    if not isinstance(tid, str) or not isinstance(batch, str) or not isinstance(events, list):
        raise SyncError("batch: tid, batch and events are required")
    if not 1 <= len(events) <= 500:
        raise SyncError(f"batch: {len(events)} events (1..500 allowed)")
    return BatchIn(tid, batch, events)


def event_error(event: Any) -> str | None:
    """None for a well-formed §2 event, else a short reason (the ack's `error`)."""
    if not isinstance(event, dict):
        return "schema"
    if any(name not in event for name in _EVENT_FIELDS):
        return "schema"
    try:
        uuid.UUID(event["id"])
    except (TypeError, ValueError, AttributeError):
        return "schema"
    seq = event["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "schema"
    if event["mode"] not in MODES or event["result"] not in ("accepted", "rejected"):
        return "schema"
    if event["clock"] not in ("synced", "unsynced"):
        return "schema"
    return None


# -- §3 ack ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ack:
    batch: str
    ids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...]  # (event id, error)


def build_ack(batch: str, ids: list[str], rejected: list[tuple[str, str]] = ()) -> bytes:
    # `rejected` is always present, possibly empty: simpler for every city implementation.
    return _dumps({"v": VERSION, "batch": batch, "ids": list(ids),
                   "rejected": [{"id": i, "error": e} for i, e in rejected]})


def parse_ack(payload: bytes) -> Ack:
    """A §3 ack, or SyncError saying what is wrong with it (the terminal logs and ignores)."""
    doc = _json_object(payload, "ack")
    if doc.get("v") != VERSION:
        raise SyncError(f"ack: unsupported version {doc.get('v')!r}")
    batch, ids, rejected = doc.get("batch"), doc.get("ids", []), doc.get("rejected", [])
    if not isinstance(batch, str):
        raise SyncError("ack: `batch` must be a string")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise SyncError("ack: `ids` must be a list of strings")
    if not isinstance(rejected, list):
        raise SyncError("ack: `rejected` must be a list")
    out: list[tuple[str, str]] = []
    for item in rejected:
        if not (isinstance(item, dict) and isinstance(item.get("id"), str)
                and isinstance(item.get("error"), str)):
            raise SyncError("ack: each `rejected` item needs string `id` and `error`")
        out.append((item["id"], item["error"]))
    if not ids and not out:
        raise SyncError("ack: names no event")
    return Ack(batch, tuple(ids), tuple(out))


# -- §4 status ---------------------------------------------------------------------------

def build_status(*, tid: str, queue: dict, last_ack_at: str | None, reader: str,
                 versions: dict[str, int], rejected_bundles: int,
                 at_ms: int | None = None) -> bytes:
    return _dumps({
        "v": VERSION, "tid": tid, "state": "online", "at": rfc3339_ms(at_ms),
        "queue": {"pending": int(queue.get("pending", 0)), "oldest_at": queue.get("oldest_at")},
        "last_ack_at": last_ack_at, "reader": reader,
        "versions": versions, "rejected_bundles": rejected_bundles,
    })


def build_offline(tid: str) -> bytes:
    """The §4 Will, also published by an orderly stop (the broker sends the Will only when
    the connection dies without a DISCONNECT)."""
    return _dumps({"v": VERSION, "tid": tid, "state": "offline"})


def _json_object(payload: bytes, what: str) -> dict:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SyncError(f"{what}: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise SyncError(f"{what}: not a JSON object")
    return doc
