"""The queue's counters for `queue summary` and the status (reader.wire.status.QueueSummary).

Read every 2 s by the tap thread: every query here is a fixed number of rows or one
index probe, whatever the backlog (the counts are kept by triggers, schema version 4).
"""

from __future__ import annotations

from sqlite_utils import Database

from reader.queue.schema import LAST_SEQ
from reader.wire.status import QueueSummary


def read_summary(db: Database, db_bytes: int, over_warn: bool) -> QueueSummary:
    """One consistent snapshot (a single read transaction) of the queue's counters."""
    db.execute("BEGIN")
    try:
        # Kept by triggers (schema version 4): no COUNT(*) over the backlog here.
        counts = dict(db.execute("SELECT state, n FROM event_counts").fetchall())
        # MIN(seq) per state is one index probe each; an IN (...) would sort.
        firsts = [db.execute("SELECT MIN(seq) FROM events WHERE state = ?",
                             (state,)).fetchone()[0] for state in ("pending", "in_flight")]
        firsts = [seq for seq in firsts if seq is not None]
        oldest_at = (db.execute("SELECT at FROM events WHERE seq = ?",
                                (min(firsts),)).fetchone()[0] if firsts else None)
        last_seq = db.execute(LAST_SEQ).fetchone()[0]
        alarms = tuple(row[0] for row in db.execute(
            "SELECT message FROM alarms ORDER BY n").fetchall())
    finally:
        db.execute("COMMIT")
    in_flight = counts.get("in_flight", 0)
    return QueueSummary(
        pending=counts.get("pending", 0) + in_flight, in_flight=in_flight,
        rejected=counts.get("rejected", 0), oldest_at=oldest_at, last_seq=last_seq,
        db_bytes=db_bytes, over_warn=over_warn, alarms=alarms)
