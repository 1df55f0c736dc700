"""The event of one tap, exactly as mqtt-v1 §2 puts it on the wire.

`Event` is the one description of the central datum: the tap path builds it, the queue
stores its JSON (`dumps`), the sync sends those bytes as they are, and a receiver reads
them back with `Event.from_json`. Its field list is written once, here (`FIELDS`).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from reader.card.reasons import MODE_REASONS, Reason
from reader.card.record import CardRecord

__all__ = ["FIELDS", "MODE_REASONS", "CardRef", "Event", "Mode", "Proof", "Reason",
           "b64url", "dumps", "rfc3339_ms"]

# The wire order of an event's fields (mqtt-v1 §2), which is also its stored order.
FIELDS = ("id", "seq", "at", "at_ms", "clock", "mode", "facility", "result", "reason",
          "card", "proof", "detail")


class Mode(StrEnum):
    """What the terminal does at its facility (mqtt-v1 §2 `mode`)."""

    CHECKIN = "checkin"
    EVENT = "event"
    NURSERY = "nursery"
    COUPON = "coupon"
    WATCH = "watch"


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


def dumps(obj: Any) -> str:
    """The project's one JSON encoding of what crosses to the city: compact, UTF-8 text."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class CardRef:
    """Which card tapped (`card`), once its record's issuer signature verified."""

    muni: str
    mid: str
    sn: str  # lower-case hex of the 8-byte serial
    ap: str  # "member" | "nursery"

    @classmethod
    def of(cls, record: CardRecord) -> CardRef:
        return cls(record.muni, record.mid, record.sn.hex(), record.ap)


@dataclass(frozen=True)
class Proof:
    """The tap receipt (card-ap-v1 §5): the challenge's nonce and the card's signature."""

    nonce: str  # base64url, 16 bytes
    sig: str  # base64url, 64 bytes

    @classmethod
    def of(cls, nonce: bytes, signature: bytes) -> Proof:
        return cls(b64url(nonce), b64url(signature))


@dataclass(frozen=True)
class Event:
    id: str  # UUIDv7: the idempotency key
    at_ms: int  # wall clock of the tap, Unix ms (`at` is derived from it)
    clock_synced: bool
    mode: Mode
    facility: str
    reason: Reason | None  # None: accepted
    card: CardRef | None = None
    proof: Proof | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None  # allocated by the queue in the insert's transaction

    def __post_init__(self) -> None:
        uuid.UUID(self.id)  # ValueError for anything that is not a UUID
        if self.seq is not None and (isinstance(self.seq, bool) or self.seq < 1):
            raise ValueError(f"seq must be >= 1, not {self.seq!r}")
        # Coerce text to the enums: a receiver's JSON and a mode's name alike.
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.reason is not None:
            object.__setattr__(self, "reason", Reason(self.reason))

    @property
    def at(self) -> str:
        return rfc3339_ms(self.at_ms)

    @property
    def accepted(self) -> bool:
        return self.reason is None

    def with_seq(self, seq: int) -> Event:
        return replace(self, seq=seq)

    def to_json(self) -> dict[str, Any]:
        """The mqtt-v1 §2 object, fields in wire order (`seq` only once allocated)."""
        out: dict[str, Any] = {
            "id": self.id, "seq": self.seq, "at": self.at, "at_ms": self.at_ms,
            "clock": "synced" if self.clock_synced else "unsynced",
            "mode": str(self.mode), "facility": self.facility,
            "result": "accepted" if self.reason is None else "rejected",
            "reason": None if self.reason is None else str(self.reason),
            "card": None if self.card is None else _fields(self.card),
            "proof": None if self.proof is None else _fields(self.proof),
            "detail": dict(self.detail),
        }
        if self.seq is None:
            del out["seq"]
        return out

    def dumps(self) -> str:
        return dumps(self.to_json())

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Event:
        """An event read back (from the queue or a batch); ValueError when it is not one."""
        try:
            card, proof = doc["card"], doc["proof"]
            return cls(
                id=doc["id"], seq=doc.get("seq"), at_ms=doc["at_ms"],
                clock_synced={"synced": True, "unsynced": False}[doc["clock"]],
                mode=doc["mode"], facility=doc["facility"], reason=doc["reason"],
                card=None if card is None else CardRef(**card),
                proof=None if proof is None else Proof(**proof), detail=dict(doc["detail"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an mqtt-v1 §2 event: {exc!r}") from None


def _fields(obj: CardRef | Proof) -> dict[str, str]:
    return dict(vars(obj))
