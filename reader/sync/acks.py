"""Applying a city ack (mqtt-v1 §3) to the queue: the only way an event leaves it.

Malformed acks, duplicates and ids this terminal never had are normal weather on an
at-least-once link: each is logged and counted, none raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reader.errors import SyncError
from reader.system.logs import fields
from reader.wire.messages import parse_ack
from reader.wire.status import SyncCounters

if TYPE_CHECKING:
    from reader.queue import EventQueue

log = logging.getLogger("reader.sync.client")  # one logger for the whole city link


@dataclass(frozen=True)
class AckOutcome:
    batch: str
    acked: int  # events deleted from the queue
    rejected: int  # events set aside (the city will never take them)
    unknown: int  # ids not in the queue: a duplicate ack, or not ours


def apply_ack(queue: EventQueue, payload: bytes, counters: SyncCounters,
              sent: Mapping[str, Mapping[str, int]] | None = None) -> AckOutcome | None:
    """Delete the acked events, set the rejected ones aside; None for a malformed ack.
    `sent`: batch id -> {event id: seq} of batches sent, so an ack deletes by seq range."""
    try:
        ack = parse_ack(payload)
    except SyncError as exc:
        counters.malformed_acks += 1
        log.warning("malformed ack ignored", **fields(why=str(exc), size=len(payload)))
        return None
    done = queue.ack(ack.ids, (sent or {}).get(ack.batch), ack.batch) if ack.ids else 0
    rejected = queue.reject(ack.rejected) if ack.rejected else 0
    unknown = len(ack.ids) + len(ack.rejected) - done - rejected
    if unknown:
        counters.unknown_ack_ids += unknown
        log.info("ack names events not in the queue (duplicate or unknown), ignored",
                 **fields(batch=ack.batch, ids=unknown))
    if rejected:
        log.warning("city rejected events; kept aside", **fields(
            batch=ack.batch, events=rejected, errors=sorted({e for _, e in ack.rejected})))
    counters.events_acked += done
    counters.events_rejected += rejected
    return AckOutcome(ack.batch, done, rejected, unknown)
