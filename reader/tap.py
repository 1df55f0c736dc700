"""One tap, end to end on one CardLink: checks 1-8 of card-ap-v1 §4.

This is the only place where the sans-I/O session meets a transport. It never raises
for anything a card or the radio does: every outcome is a `TapOutcome` with one of the
spec's reasons. Step 9 (the mode) and recording are the daemon's.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import CardProtocolError, TransportError
from .logs import fields
from .record import CardRecord
from .session import CardSession, Exchange
from .transports.base import CardLink
from .trust import TrustStore
from .uuid7 import uuid7
from .verify import card_signature_valid, check_record, make_challenge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """Which application to select and whether the card must prove its key (AP profile)."""

    aid: bytes
    ap: str  # "member" | "nursery": what the record's `ap` must say
    authenticate: bool = True


@dataclass
class TapOutcome:
    event_id: uuid.UUID
    at_ms: int
    reason: str | None  # None: checks 1-8 passed
    record: CardRecord | None = None  # set once the issuer signature verified
    nonce: bytes | None = None
    signature: bytes | None = None  # the receipt, when INTERNAL AUTHENTICATE ran
    detail: str = ""
    transcript: list[Exchange] = field(default_factory=list)
    timings_ms: list[float] = field(default_factory=list)  # per APDU, for `tap` and benches


def perform_tap(link: CardLink, profile: Profile, trust: TrustStore, terminal_id: str, *,
                clock_skew_s: int = 300, wall: Callable[[], float] = time.time) -> TapOutcome:
    """Run the card sequence and checks 1-8; never raises for card or transport faults."""
    event_id = uuid7()
    at_ms = int(wall() * 1000)
    out = TapOutcome(event_id, at_ms, None)
    session = CardSession(profile.aid)
    out.transcript = session.result.transcript
    try:
        _drive(session, link, out)
        if session.result.reason is not None:
            out.reason, out.detail = session.result.reason, session.result.detail
            return out
        assert session.result.ef_record is not None
        check = check_record(trust, session.result.ef_record, profile.ap, at_ms / 1000,
                             clock_skew_s)
        out.record, out.detail = check.record, check.detail
        if check.reason is not None or check.record is None:
            out.reason = check.reason or "bad_record"
            return out
        if not profile.authenticate:
            session.finish()
            return out
        out.nonce = os.urandom(16)  # fresh per tap: a challenge is never repeated
        challenge = make_challenge(terminal_id, event_id.bytes, at_ms, out.nonce)
        session.authenticate(challenge)
        _drive(session, link, out)
        if session.result.reason is not None:
            out.reason, out.detail = session.result.reason, session.result.detail
            return out
        out.signature = session.result.signature or b""
        if not card_signature_valid(check.record, challenge, out.signature):
            out.reason = "clone_suspected"
    except TransportError as exc:
        # card-ap-v1 §2: a transport error mid-sequence means the card left: nothing accepted.
        out.reason, out.detail = "card_removed", str(exc)
    except CardProtocolError as exc:  # the link saw the card break its protocol (ISO-DEP)
        out.reason, out.detail = "card_error", str(exc)
    except Exception as exc:  # a library tripping on what a hostile card sent
        log.warning("card broke the reader library", **fields(why=repr(exc)))
        out.reason, out.detail = "card_error", repr(exc)
    return out


def _drive(session: CardSession, link: CardLink, out: TapOutcome) -> None:
    while (command := session.next_command()) is not None:
        started = time.perf_counter()
        response = link.transmit(command)
        out.timings_ms.append((time.perf_counter() - started) * 1000)
        session.receive(response)
