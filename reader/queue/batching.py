"""Which stored events go into the next batch (mqtt-v1 §2: at most 500 events and 256 KiB).

Each event's size is measured once, at append: the bytes of its stored JSON, which is
exactly what the batch carries (reader.wire.messages.build_batch joins the stored texts
with commas). Rows written by older releases hold a larger upper bound there, which only
makes their batches smaller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Row = tuple[int, str, str, int]  # seq, id, body, wire_bytes


@dataclass(frozen=True)
class Batch:
    """Events taken for one send, in seq order; `build_batch(tid, id, bodies)` is the payload."""

    id: str  # UUIDv7 string, the mqtt-v1 §2 `batch`
    ids: tuple[str, ...]  # the events' ids, what the city's ack names
    seqs: tuple[int, ...]
    bodies: tuple[str, ...]  # each event's stored JSON (with seq)

    def __len__(self) -> int:
        return len(self.seqs)


def fill(rows: Iterable[Row], max_events: int, room: int) -> list[Row]:
    """The longest seq-ordered prefix of `rows` within max_events and `room` bytes."""
    chosen: list[Row] = []
    used = 0
    for row in rows:
        cost = row[3] + (1 if chosen else 0)  # "," between events
        if len(chosen) == max_events or used + cost > room:
            break
        chosen.append(row)
        used += cost
    return chosen


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive seqs, from seqs in ascending order: what
    the queue marks and deletes with one statement each."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out
