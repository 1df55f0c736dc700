"""The signed card record of card-ap-v1 §3, parsed and checked for shape.

Only the shape is checked here (types, lengths, patterns); whether it is trusted,
current and unrevoked is verify.py's job, in the spec's order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reader.card.cose import CoseError, Sign1, decode_sign1

MAX_RECORD_LEN = 2048
_MID = re.compile(r"[A-Za-z0-9-]{1,32}")
_MUNI = re.compile(r"[0-9]{6}")
KNOWN_ATTRS: dict[str, type] = {
    "senior": bool,
    "disability": bool,
    "license_returned": bool,
    "birth_year": int,
    "grade": str,
}


class RecordError(ValueError):
    """EF.RECORD does not hold a record of card-ap-v1 §3 (reason `bad_record`)."""


@dataclass(frozen=True)
class CardRecord:
    v: int
    muni: str
    ap: str
    mid: str
    sn: bytes
    pk: bytes
    iat: int
    exp: int
    attr: dict[str, bool | int | str] = field(default_factory=dict)


def split_ef_record(content: bytes) -> bytes:
    """EF.RECORD = 2-byte length N (1..2048) + N bytes; return the N bytes."""
    if len(content) < 2:
        raise RecordError("EF.RECORD shorter than its length prefix")
    n = int.from_bytes(content[:2], "big")
    if not 1 <= n <= MAX_RECORD_LEN:
        raise RecordError(f"EF.RECORD length {n} outside 1..{MAX_RECORD_LEN}")
    if len(content) != 2 + n:
        raise RecordError(f"EF.RECORD holds {len(content) - 2} bytes, length says {n}")
    return content[2:]


def parse_signed_record(record: bytes) -> tuple[Sign1, CardRecord]:
    """COSE_Sign1 bytes -> (the envelope, the record). RecordError on any malformation."""
    try:
        envelope = decode_sign1(record)
        body = envelope.payload_map()
    except CoseError as exc:
        raise RecordError(str(exc)) from None
    return envelope, record_from_map(body)


def _get(body: dict[Any, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    # bool is an int in Python; a record's uint must not be `true`.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordError(f"record field {key!r} missing or not {kind.__name__}")
    return value


def record_from_map(body: dict[Any, Any]) -> CardRecord:
    v = _get(body, "v", int)
    if v != 1:
        raise RecordError(f"record version {v} is not 1")
    muni = _get(body, "muni", str)
    if not _MUNI.fullmatch(muni):
        raise RecordError("muni is not 6 digits")
    ap = _get(body, "ap", str)
    if ap not in ("member", "nursery"):
        raise RecordError(f"ap {ap!r} is not member or nursery")
    mid = _get(body, "mid", str)
    if not _MID.fullmatch(mid):
        raise RecordError("mid is not 1-32 of [A-Za-z0-9-]")
    sn = _get(body, "sn", bytes)
    if len(sn) != 8:
        raise RecordError("sn is not 8 bytes")
    pk = _get(body, "pk", bytes)
    if len(pk) != 65 or pk[0] != 0x04:
        raise RecordError("pk is not a 65-byte uncompressed point")
    iat = _get(body, "iat", int)
    exp = _get(body, "exp", int)
    if iat < 0 or exp < 0:
        raise RecordError("iat/exp must be unsigned")
    attr = body.get("attr", {})
    if not isinstance(attr, Mapping):
        raise RecordError("attr is not a map")
    clean: dict[str, bool | int | str] = {}
    for key, value in attr.items():
        if not isinstance(key, str) or not isinstance(value, bool | int | str):
            raise RecordError("attr keys must be text, values bool/int/text")
        clean[key] = value
    return CardRecord(v, muni, ap, mid, sn, pk, iat, exp, clean)
