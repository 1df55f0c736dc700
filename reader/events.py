"""The event of one tap, exactly as mqtt-v1 §2 puts it on the wire (less `seq`,
which the queue allocates in the insert's transaction)."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep this module light: the city receiver uses the formatter
    from .tap import TapOutcome


def b64url(data: bytes) -> str:
    # RFC 4648 §5 without padding, as JOSE/COSE tooling writes it; decoders that want
    # padding add it back (len % 4). See docs/city-integration.md.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc3339_ms(at_ms: int | None = None) -> str:
    """`2026-11-26T04:42:20.123Z`: the mqtt-v1 §2 time format (UTC, milliseconds), of
    Unix milliseconds or now. The one formatter of the project's timestamps."""
    if at_ms is None:
        at_ms = time.time_ns() // 1_000_000
    seconds, millis = divmod(at_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def build_event(outcome: TapOutcome, *, mode: str, facility: str, clock_synced: bool,
                reason: str | None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """`reason` is the final one: the card's (checks 1-8) or the mode's (check 9)."""
    record = outcome.record
    card = None
    if record is not None:  # the record was read and its issuer signature verified
        card = {"muni": record.muni, "mid": record.mid, "sn": record.sn.hex(), "ap": record.ap}
    proof = None
    if outcome.nonce is not None and outcome.signature is not None and len(outcome.signature) == 64:
        proof = {"nonce": b64url(outcome.nonce), "sig": b64url(outcome.signature)}
    return {
        "id": str(outcome.event_id),
        "at": rfc3339_ms(outcome.at_ms),
        "at_ms": outcome.at_ms,
        "clock": "synced" if clock_synced else "unsynced",
        "mode": mode,
        "facility": facility,
        "result": "accepted" if reason is None else "rejected",
        "reason": reason,
        "card": card,
        "proof": proof,
        "detail": detail or {},
    }
