"""Applying a city ack (mqtt-v1 §3) to the queue: the only way an event leaves it.

Malformed acks, duplicates and ids this terminal never had are normal weather on an
at-least-once link: each is logged and counted, none raises.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reader.errors import SyncError
from reader.system.logs import fields
from reader.wire.messages import parse_ack
from reader.wire.status import SyncCounters

if TYPE_CHECKING:
    from reader.queue import EventQueue
    from reader.queue.batching import Batch

log = logging.getLogger("reader.sync.client")  # one logger for the whole city link


@dataclass(frozen=True)
class AckOutcome:
    batch: str
    acked: int  # events deleted from the queue
    rejected: int  # events set aside (the city will never take them)
    unknown: int  # ids not in the queue: a duplicate ack, or not ours


class SentBatches:
    """{event id: seq} of the last batches sent, by batch id, so that their ack deletes by
    seq range. Kept past the window's ack timeout (a late ack is still worth it); bounded."""

    def __init__(self, keep: int = 64) -> None:  # 4 windows' worth
        self._keep = keep
        self._seqs: OrderedDict[str, dict[str, int]] = OrderedDict()

    def add(self, batch: Batch) -> None:
        self._seqs[batch.id] = dict(zip(batch.ids, batch.seqs, strict=True))
        while len(self._seqs) > self._keep:
            self._seqs.popitem(last=False)

    def pop(self, batch_id: str) -> Mapping[str, int] | None:
        return self._seqs.pop(batch_id, None)


def apply_ack(queue: EventQueue, payload: bytes, counters: SyncCounters,
              sent: SentBatches | None = None) -> AckOutcome | None:
    """Delete the acked events, set the rejected ones aside; None for a malformed ack."""
    try:
        ack = parse_ack(payload)
    except SyncError as exc:
        counters.malformed_acks += 1
        log.warning("malformed ack ignored", **fields(why=str(exc), size=len(payload)))
        return None
    seqs = sent.pop(ack.batch) if sent is not None else None
    done = queue.ack(ack.ids, seqs, ack.batch) if ack.ids else 0
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
