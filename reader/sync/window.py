"""How much the terminal lets loose at once, and how long it waits for an ack.

Two bounds. Batches not yet PUBACKed sit in paho's memory (paho keeps its session there),
so only a few may be outstanding: a 100,000-event backlog stays in SQLite, not in RAM.
Batches PUBACKed but not yet acknowledged by the city (§3) cost only their id here, but
sending the whole backlog to a receiver that does not answer would only be sent again
after the ack timeout, so they are bounded too. A batch leaves the window when its ack
arrives or its ack timeout passes (its events are then due again in the queue).

The ack timeout adapts as TCP's retransmission timer does (RFC 6298): each ack is a
round-trip sample (sent → ack), smoothed into SRTT and its variation RTTVAR, and the wait
is SRTT + 4·RTTVAR, never below the configured `ack_timeout_s` (the operator's promise of
how fast acks normally come) nor above 10× it. A timeout doubles the wait (§5.5) until the
next sample. Unlike TCP's segments, each send of an event is a new batch with its own id,
so a late ack is an exact sample and Karn's ambiguity does not arise: a city whose acks
come 35 s after a 30 s timeout costs one resend, then none (issue 22: every batch twice).
"""

from __future__ import annotations

from collections import OrderedDict

ALPHA, BETA, K = 1 / 8, 1 / 4, 4  # RFC 6298 §2
CEILING = 10  # the wait never grows past this many times ack_timeout_s
KEEP_SENT = 256  # send times kept for late acks (past the window): 16 windows


class SendWindow:
    def __init__(self, *, max_unpubacked: int = 4, max_unacked: int = 16,
                 ack_timeout_s: float = 30.0) -> None:
        self.max_unpubacked = max_unpubacked
        self.max_unacked = max_unacked
        self.ack_timeout_s = ack_timeout_s
        self._unpubacked: set[int] = set()         # paho mids
        self._unacked: dict[str, float] = {}       # batch id -> monotonic time sent
        self._sent_at: OrderedDict[str, float] = OrderedDict()  # also the expired ones
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rto = ack_timeout_s

    @property
    def rto(self) -> float:
        """How long a batch waits for its ack before its events are due again."""
        return self._rto

    def can_send(self) -> bool:
        return (len(self._unpubacked) < self.max_unpubacked
                and len(self._unacked) < self.max_unacked)

    def sent(self, mid: int, batch_id: str, now: float) -> None:
        self._unpubacked.add(mid)
        self._unacked[batch_id] = now
        self._sent_at[batch_id] = now
        while len(self._sent_at) > KEEP_SENT:
            self._sent_at.popitem(last=False)

    def puback(self, mid: int) -> bool:
        """True when `mid` was one of ours (a batch, not a status message)."""
        if mid in self._unpubacked:
            self._unpubacked.discard(mid)
            return True
        return False

    def acked(self, batch_id: str, now: float) -> bool:
        """Note the ack's round trip; True when the batch was still in the window."""
        sent_at = self._sent_at.pop(batch_id, None)
        if sent_at is not None and now >= sent_at:
            self._sample(now - sent_at)
        return self._unacked.pop(batch_id, None) is not None

    def expire(self, now: float) -> list[str]:
        """Drop batches whose ack is overdue; their ids (for the log)."""
        late = [b for b, at in self._unacked.items() if now - at >= self._rto]
        for batch_id in late:
            del self._unacked[batch_id]
        if late:  # RFC 6298 §5.5: back off until an ack says how long they really take
            self._rto = min(self._rto * 2, self.ack_timeout_s * CEILING)
        return late

    def forget_unacked(self) -> None:
        """The broker lost our session: acks sent to it meanwhile are gone for good."""
        self._unacked.clear()

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def _sample(self, rtt: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = (1 - BETA) * self._rttvar + BETA * abs(self._srtt - rtt)
            self._srtt = (1 - ALPHA) * self._srtt + ALPHA * rtt
        self._rto = min(max(self.ack_timeout_s, self._srtt + K * self._rttvar),
                        self.ack_timeout_s * CEILING)
