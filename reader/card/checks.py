"""Local verification: checks 2-8 of card-ap-v1 §4, in the spec's order, and the receipt.

Pure: bytes, keys and a time in, a reason out (None when the check passed). Check 1
(SELECT) is the session's, check 9 (the mode) is the mode's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from reader.card.cose import public_key_from_point, verify_raw
from reader.card.reasons import Reason
from reader.card.record import CardRecord, RecordError, parse_signed_record
from reader.card.session import AUTH_PREFIX


class Trust(Protocol):
    """What checks 3 and 7 ask of the held bundles (reader.bundles.TrustStore has it)."""

    def accepts(self, muni: str) -> bool:
        """Whether this terminal takes cards of `muni`: its own town, or a neighbour the
        city's config bundle names."""
        ...

    def issuer_keys(self, kid: bytes, muni: str, at: float) -> list[ec.EllipticCurvePublicKey]:
        """Issuer keys trusted for `muni` at time `at` under `kid`."""
        ...

    def is_denied(self, sn: bytes, mid: str, muni: str) -> bool:
        """Whether the serial or the member is on the deny list of the card's town."""
        ...


@dataclass(frozen=True)
class RecordCheck:
    reason: Reason | None
    # Set once the issuer signature verified (check 4): only then may the event name the card.
    record: CardRecord | None = None
    detail: str = ""


def check_record(trust: Trust, ef_record: bytes, selected_ap: str, now: float,
                 clock_skew_s: int) -> RecordCheck:
    """Checks 2-7 on the record bytes read from EF.RECORD (length prefix removed)."""
    try:
        envelope, record = parse_signed_record(ef_record)  # 2
    except RecordError as exc:
        return RecordCheck(Reason.BAD_RECORD, detail=str(exc))
    if not trust.accepts(record.muni):  # 3: keys of a town not accepted here are not trusted
        return RecordCheck(Reason.UNKNOWN_ISSUER,
                           detail=f"cards of {record.muni} are not accepted here")
    issuers = trust.issuer_keys(envelope.kid, record.muni, now)
    if not issuers:
        return RecordCheck(Reason.UNKNOWN_ISSUER,
                           detail=f"kid {envelope.kid.hex()} for {record.muni}")
    if not any(envelope.verify(key) for key in issuers):  # 4
        return RecordCheck(Reason.BAD_SIGNATURE)
    if record.ap != selected_ap:  # 5
        return RecordCheck(Reason.BAD_RECORD, record,
                           f"record for {record.ap} under {selected_ap} AP")
    if now + clock_skew_s < record.iat:  # 6
        return RecordCheck(Reason.NOT_YET_VALID, record)
    if now - clock_skew_s > record.exp:
        return RecordCheck(Reason.EXPIRED, record)
    if trust.is_denied(record.sn, record.mid, record.muni):  # 7
        return RecordCheck(Reason.REVOKED, record)
    return RecordCheck(None, record)


def card_signature_valid(record: CardRecord, challenge: bytes, signature: bytes) -> bool:
    """Check 8: the card proved it holds the private key of the record's `pk`."""
    try:
        key = public_key_from_point(record.pk)
    except ValueError:
        return False  # an off-curve pk can sign nothing: the card cannot be genuine
    return verify_raw(key, signature, AUTH_PREFIX + challenge)


def make_challenge(terminal_id: str, event_id: bytes, at_ms: int, nonce: bytes) -> bytes:
    """card-ap-v1 §5: binds the card's signature to this terminal, event and moment."""
    if len(event_id) != 16 or len(nonce) != 16:
        raise ValueError("event id and nonce must be 16 bytes")
    return hashlib.sha256(
        terminal_id.encode() + b"\x00" + event_id + at_ms.to_bytes(8, "big") + nonce
    ).digest()
