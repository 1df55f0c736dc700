"""One tap, end to end on one CardLink: checks 1-8 of card-ap-v1 §4.

This is the only place where the sans-I/O session meets a transport. It never raises
for anything a card or the radio does: every outcome is a `TapOutcome` with one of the
spec's reasons. Step 9 (the mode) and recording are the daemon's; `TapOutcome.event`
makes the wire event of the whole verdict.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reader.card.checks import Trust, card_signature_valid, check_record, make_challenge
from reader.card.profiles import Profile
from reader.card.reasons import Reason
from reader.card.record import CardRecord
from reader.card.session import CardSession, Exchange
from reader.errors import CardProtocolError, CardTimeoutError, TransportError
from reader.system.logs import fields
from reader.system.uuid7 import uuid7
from reader.transports.base import CardLink
from reader.wire.event import CardRef, Event, Mode, Proof

log = logging.getLogger(__name__)


@dataclass
class TapOutcome:
    event_id: uuid.UUID
    at_ms: int
    reason: Reason | None  # None: checks 1-8 passed
    record: CardRecord | None = None  # set once the issuer signature verified
    nonce: bytes | None = None
    signature: bytes | None = None  # the receipt, when INTERNAL AUTHENTICATE ran
    detail: str = ""
    transcript: list[Exchange] = field(default_factory=list)
    timings_ms: list[float] = field(default_factory=list)  # per APDU, for `tap` and benches

    def event(self, *, mode: Mode, facility: str, clock_synced: bool, reason: Reason | None,
              detail: Mapping[str, Any] | None = None) -> Event:
        """The mqtt-v1 §2 event; `reason` is the final one: the card's (checks 1-8) or the
        mode's (check 9)."""
        proof = None
        if self.nonce is not None and self.signature is not None and len(self.signature) == 64:
            proof = Proof.of(self.nonce, self.signature)
        # The card is named only once its record's issuer signature verified.
        card = CardRef.of(self.record) if self.record is not None else None
        return Event(id=str(self.event_id), at_ms=self.at_ms, clock_synced=clock_synced,
                     mode=mode, facility=facility, reason=reason, card=card, proof=proof,
                     detail=dict(detail or {}))


DEFAULT_DEADLINE_S = 3.0  # [reader] tap_deadline_s


def perform_tap(link: CardLink, profile: Profile, trust: Trust, terminal_id: str, *,
                clock_skew_s: int = 300, wall: Callable[[], float] = time.time,
                deadline_s: float = DEFAULT_DEADLINE_S) -> TapOutcome:
    """Run the card sequence and checks 1-8; never raises for card or transport faults.

    Returns within `deadline_s` (plus our own few milliseconds of checking): every APDU
    is handed what is left of it, so a card that falls silent or stalls ends as
    card_error instead of holding the tap loop (and the watchdog) until it leaves."""
    event_id = uuid7()
    at_ms = int(wall() * 1000)
    out = TapOutcome(event_id, at_ms, None)
    session = CardSession(profile.aids)
    out.transcript = session.result.transcript
    ends_at = time.monotonic() + deadline_s
    try:
        _drive(session, link, out, ends_at)
        if session.result.reason is not None:
            out.reason, out.detail = session.result.reason, session.result.detail
            return out
        assert session.result.ef_record is not None
        check = check_record(trust, session.result.ef_record, profile.ap, at_ms / 1000,
                             clock_skew_s)
        out.record, out.detail = check.record, check.detail
        if check.reason is not None or check.record is None:
            out.reason = check.reason or Reason.BAD_RECORD
            return out
        if not profile.authenticate:
            session.finish()
            return out
        out.nonce = os.urandom(16)  # fresh per tap: a challenge is never repeated
        challenge = make_challenge(terminal_id, event_id.bytes, at_ms, out.nonce)
        session.authenticate(challenge)
        _drive(session, link, out, ends_at)
        if session.result.reason is not None:
            out.reason, out.detail = session.result.reason, session.result.detail
            return out
        out.signature = session.result.signature or b""
        if not card_signature_valid(check.record, challenge, out.signature):
            out.reason = Reason.CLONE_SUSPECTED
    except CardTimeoutError as exc:
        out.reason, out.detail = Reason.CARD_ERROR, str(exc)
        log.warning("tap deadline passed", **fields(
            deadline_s=deadline_s, apdus_answered=len(out.timings_ms), why=str(exc)))
    except TransportError as exc:
        # card-ap-v1 §2: a transport error mid-sequence means the card left: nothing accepted.
        out.reason, out.detail = Reason.CARD_REMOVED, str(exc)
    except CardProtocolError as exc:  # the link saw the card break its protocol (ISO-DEP)
        out.reason, out.detail = Reason.CARD_ERROR, str(exc)
    except Exception as exc:  # a library tripping on what a hostile card sent
        log.warning("card broke the reader library", **fields(why=repr(exc)))
        out.reason, out.detail = Reason.CARD_ERROR, repr(exc)
    return out


def _drive(session: CardSession, link: CardLink, out: TapOutcome, ends_at: float) -> None:
    while (command := session.next_command()) is not None:
        started = time.perf_counter()
        left = ends_at - time.monotonic()
        if left <= 0:
            raise CardTimeoutError("the card did not finish within the tap deadline")
        response = link.transmit(command, left)
        out.timings_ms.append((time.perf_counter() - started) * 1000)
        session.receive(response)
