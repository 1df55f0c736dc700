"""How much the terminal lets loose at once.

Two bounds. Batches not yet PUBACKed sit in paho's memory (paho keeps its session there),
so only a few may be outstanding: a 100,000-event backlog stays in SQLite, not in RAM.
Batches PUBACKed but not yet acknowledged by the city (§3) cost only their id here, but
sending the whole backlog to a receiver that does not answer would only be sent again
after the ack timeout, so they are bounded too. A batch leaves the window when its ack
arrives or its ack timeout passes (its events are then due again in the queue).
"""

from __future__ import annotations


class SendWindow:
    def __init__(self, *, max_unpubacked: int = 4, max_unacked: int = 16,
                 ack_timeout_s: float = 30.0) -> None:
        self.max_unpubacked = max_unpubacked
        self.max_unacked = max_unacked
        self.ack_timeout_s = ack_timeout_s
        self._unpubacked: set[int] = set()         # paho mids
        self._unacked: dict[str, float] = {}       # batch id -> monotonic time sent

    def can_send(self) -> bool:
        return (len(self._unpubacked) < self.max_unpubacked
                and len(self._unacked) < self.max_unacked)

    def sent(self, mid: int, batch_id: str, now: float) -> None:
        self._unpubacked.add(mid)
        self._unacked[batch_id] = now

    def puback(self, mid: int) -> bool:
        """True when `mid` was one of ours (a batch, not a status message)."""
        if mid in self._unpubacked:
            self._unpubacked.discard(mid)
            return True
        return False

    def acked(self, batch_id: str) -> bool:
        return self._unacked.pop(batch_id, None) is not None

    def expire(self, now: float) -> list[str]:
        """Drop batches whose ack is overdue; their ids (for the log)."""
        late = [b for b, at in self._unacked.items() if now - at >= self.ack_timeout_s]
        for batch_id in late:
            del self._unacked[batch_id]
        return late

    def forget_unacked(self) -> None:
        """The broker lost our session: acks sent to it meanwhile are gone for good."""
        self._unacked.clear()

    @property
    def unacked(self) -> int:
        return len(self._unacked)
