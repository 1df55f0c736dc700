"""Batches of mqtt-v1 §2 and how many bytes their JSON can take.

A batch must stay within 256 KiB of JSON, whatever encoder the sync side uses. Each
event's size is measured once, at append, in the most expensive standard encoding
(json.dumps defaults: ", " / ": " separators and \\u escapes for every non-ASCII
character); compact separators or raw UTF-8 only ever make it smaller. So a batch
filled against these figures fits the limit however it is serialised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# mqtt-v1: tid is [a-z0-9][a-z0-9-]{2,63}; without the real one, assume the longest.
LONGEST_TID = "t" * 64


@dataclass(frozen=True)
class Batch:
    """Events taken for one send; reader.sync.messages.build_batch makes the payload."""

    id: str  # UUIDv7 string, the mqtt-v1 §2 `batch`
    events: list[dict]  # full mqtt-v1 §2 event dicts (with seq), in seq order


def wire_bytes(event: dict) -> int:
    """Upper bound of the event's JSON size in bytes (see module docstring)."""
    return len(json.dumps(event))


def envelope_bytes(tid: str | None, batch_id: str) -> int:
    """Bytes of the batch envelope around its events (with no events in it)."""
    return len(json.dumps({"v": 1, "tid": tid or LONGEST_TID, "batch": batch_id,
                           "events": []}))
