"""mqtt-v1 payloads as pure functions: the batch (§2) and the ack (§3).

Both sides use them: the terminal builds batches and parses acks; the city service
(city/, `sukumo-city run`) parses batches and builds acks. The status and the Will (§4)
are in status.py. No I/O here, so tests are tables of bytes.

A batch is built from the events' stored JSON as it is (the queue keeps each event's
`Event.dumps()`), so the envelope is the only thing encoded at send time, and the size
of a batch can be reckoned before it is built (`batch_bytes`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reader.errors import SyncError
from reader.wire.event import FIELDS, Mode, dumps

VERSION = 1
MAX_EVENTS = 500
MAX_BYTES = 256 * 1024
# mqtt-v1: tid is [a-z0-9][a-z0-9-]{2,63}; without the real one, assume the longest.
LONGEST_TID = "t" * 64


# -- §2 batch ----------------------------------------------------------------------------

def build_batch(tid: str, batch_id: str, bodies: Sequence[str]) -> bytes:
    """The batch of these events, each given as its stored JSON text (`Event.dumps()`)."""
    head = dumps({"v": VERSION, "tid": tid, "batch": batch_id, "events": []})
    assert head.endswith("[]}")
    return (head[:-2] + ",".join(bodies) + "]}").encode()


def envelope_bytes(tid: str | None, batch_id: str) -> int:
    """Bytes of the batch envelope around its events (with no events in it)."""
    return len(build_batch(tid or LONGEST_TID, batch_id, []))


def body_bytes(body: str) -> int:
    """Bytes one stored event takes in a batch (its UTF-8 JSON, as sent)."""
    return len(body.encode())


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
    if not 1 <= len(events) <= MAX_EVENTS:
        raise SyncError(f"batch: {len(events)} events (1..{MAX_EVENTS} allowed)")
    return BatchIn(tid, batch, events)


def event_error(event: Any) -> str | None:
    """None for a well-formed §2 event, else a short reason (the ack's `error`)."""
    if not isinstance(event, dict):
        return "schema"
    if any(name not in event for name in FIELDS):
        return "schema"
    try:
        uuid.UUID(event["id"])
    except (TypeError, ValueError, AttributeError):
        return "schema"
    seq = event["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "schema"
    if event["mode"] not in set(Mode) or event["result"] not in ("accepted", "rejected"):
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


def build_ack(batch: str, ids: Sequence[str], rejected: Sequence[tuple[str, str]] = ()) -> bytes:
    # `rejected` is always present, possibly empty: simpler for every city implementation.
    return dumps({"v": VERSION, "batch": batch, "ids": list(ids),
                   "rejected": [{"id": i, "error": e} for i, e in rejected]}).encode()


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


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SyncError(f"{what}: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise SyncError(f"{what}: not a JSON object")
    return doc
