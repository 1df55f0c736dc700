"""Which stored events go into the next batch (mqtt-v1 §2: at most 500 events and 256 KiB).

Each event's size is measured once, at append: the bytes of its stored JSON, which is
exactly what the batch carries (reader.wire.messages.build_batch joins the stored texts
with commas). Rows written by older releases hold a larger upper bound there, which only
makes their batches smaller.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, islice

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
    chosen = list(islice(rows, max_events))
    # Each event costs its bytes plus the "," before it: n events take sum + n - 1.
    fits = bisect_right(list(accumulate(r[3] + 1 for r in chosen)), room + 1)
    return chosen[:fits]


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive seqs, from seqs in ascending order: what
    the queue marks and deletes with one statement each."""
    seqs = list(seqs)
    if seqs and seqs[-1] - seqs[0] == len(seqs) - 1:
        return [(seqs[0], seqs[-1])]  # the usual batch: one run (seqs are unique)
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


class DeferredMarks:
    """Batches sent but not yet marked in flight in the database (EventQueue.defer_marks).

    Marking a row in flight rewrites it and its index entry, ~3 µs an event: half of what
    a drain costs. Almost every batch is acked within milliseconds and its rows deleted,
    so the mark is put off: a batch is marked (with the time it was really sent) only when
    its ack is `after_s` late. Until then it is held here, and the rows it took are below
    `cursor()`, which the next batch starts after. A power cut or a crash before the mark
    leaves the rows pending, so they are sent again: at least once, as always.
    """

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._held: dict[str, tuple[float, list[tuple[int, int]]]] = {}

    def hold(self, batch_id: str, sent_at: float, seq_runs: list[tuple[int, int]]) -> None:
        self._held[batch_id] = (sent_at, seq_runs)

    def release(self, batch_id: str | None
                ) -> tuple[float, list[tuple[int, int]], int] | None:
        """The batch's (sent_at, runs, number of events), no longer held; None if it was not."""
        held = self._held.pop(batch_id, None) if batch_id is not None else None
        return (*held, sum(hi - lo + 1 for lo, hi in held[1])) if held else None

    def due(self, now: float, every: bool = False, peek: bool = False
            ) -> list[tuple[str, float, list[tuple[int, int]]]]:
        """Take out (or with `peek`, only list) the batches to mark now: late ones, or
        all with `every`; a wall clock stepped back past one makes it late too."""
        late = [(b, at, r) for b, (at, r) in self._held.items()
                if every or now - at >= self.after_s or now < at]
        if not peek:
            for b, _, _ in late:
                del self._held[b]
        return late

    def cursor(self) -> int:
        """Every row a held batch took has a seq up to this (0: none held)."""
        return max((runs[-1][1] for _, runs in self._held.values()), default=0)

    def clear(self) -> None:
        self._held.clear()


class SentMarks:
    """What one connection knows of the in-flight marks, so that a batch costs the same
    whatever the backlog. The overdue search walks every in-flight row (up to 16 batches
    of 500), so it runs only when one may be due: at this connection's first batch (rows
    left by an earlier process), when the oldest mark seen at the last search is past the
    timeout, or when the wall clock went back past one of our marks. Our later marks are
    newer; acks and requeues can only make a search needless, never one missed."""

    UNKNOWN = -1.0  # before the first search

    def __init__(self) -> None:
        self.oldest: float | None = self.UNKNOWN  # None: nothing in flight
        self.newest = 0.0
        self.deferred = DeferredMarks(after_s=0.0)

    def overdue_possible(self, now: float, ack_timeout_s: float) -> bool:
        if self.oldest == self.UNKNOWN or now < self.newest:
            return True
        return self.oldest is not None and now - ack_timeout_s >= self.oldest

    def note(self, marked: list[float], oldest: float | None) -> None:
        """After a commit: the marks it made (their sent_at) and the oldest now known."""
        if marked and oldest != self.UNKNOWN and (oldest is None or min(marked) < oldest):
            oldest = min(marked)
        self.oldest = oldest
        self.newest = max([self.newest, *marked])
