"""What the queue tells the technician and the city when something is wrong: a row in
`alarms` (status, `queue summary`, the MQTT status) that stays until `queue
clear-alarms`."""

from __future__ import annotations

import logging

from sqlite_utils import Database

from reader.queue.batching import Row
from reader.system.logs import fields
from reader.wire.event import rfc3339_ms

log = logging.getLogger("reader.queue.event_queue")

INSERT_ALARM = "INSERT INTO alarms (raised_at, message) VALUES (?, ?)"


def set_aside_oversized(db: Database, row: Row, max_bytes: int) -> None:
    """An event fitting no batch would block all later ones: set aside (kept), loudly;
    in the caller's transaction."""
    error = f"local: event of {row[3]} bytes cannot fit a batch of {max_bytes} bytes"
    db.execute("UPDATE events SET state = 'rejected', error = ? WHERE seq = ?",
               (error, row[0]))
    # An alarm too (status, the city): it may be the broker's packet limit, not the event.
    db.execute(INSERT_ALARM, (rfc3339_ms(),
                              f"event seq {row[0]} set aside: {error.removeprefix('local: ')}"))
    log.error("queue event too large to send; set aside as rejected",
              **fields(seq=row[0], id=row[1], bytes=row[3]))
