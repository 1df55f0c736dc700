"""A virtual Sukumo ID card: answers APDUs as card-ap-v1 §2 describes a real card.

Each instruction has one small handler. Fault knobs reproduce what real cards and
readers do to a terminal: the card torn away after N APDUs, data answered through
61xx / GET RESPONSE or through 6Cxx (wrong Le), slow APDUs and slow on-card signing,
and a clone that carries a genuine record but not its private key.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from reader.card.cose import private_key_from_scalar, sign_raw
from reader.card.session import AUTH_PREFIX

SW_OK = b"\x90\x00"
# A typical contactless Type B ATR as pcscd synthesises it; terminals must not rely on it.
DEFAULT_ATR = bytes.fromhex("3B888001000000007783950000")


class CardTorn(Exception):
    """The card left the field: the reader gets no answer to this APDU."""


Wait = Callable[[float], None]


def real_time(seconds: float) -> None:
    """The card's own time, spent for real (a card that never answers: forever)."""
    if math.isinf(seconds):
        threading.Event().wait()
    time.sleep(seconds)


@dataclass
class CardFaults:
    tear_after: int | None = None  # answer this many APDUs, then leave the field
    # answer this many APDUs, then never again while staying in the field (a hung card)
    silent_after: int | None = None
    style: Literal["plain", "61xx", "6Cxx"] = "plain"
    apdu_delay_s: float = 0.0  # per APDU round trip
    sign_delay_s: float = 0.0  # extra time for INTERNAL AUTHENTICATE (on-card ECDSA)
    wrong_key: bool = False  # a clone: signs with a key that does not match `pk`
    # command hex prefix -> response hex: a card that answers anything at all (fuzzing)
    raw_responses: dict[str, str] = field(default_factory=dict)


@dataclass
class VirtualCard:
    """apps: AID -> EF.RECORD content (length prefix included)."""

    apps: dict[bytes, bytes]
    private_key: ec.EllipticCurvePrivateKey
    faults: CardFaults = field(default_factory=CardFaults)
    name: str = "card"
    atr: bytes = DEFAULT_ATR
    hold_s: float = 0.0  # virtual reader: keep the card in the field this long after a tap
    log: list[bytes] = field(default_factory=list)  # every command received, for transcripts
    _selected: bytes | None = None
    _ef_current: bool = False
    _pending: bytes = b""  # data waiting for GET RESPONSE
    _wait: Wait = field(default=real_time, repr=False, compare=False)

    # -- the APDU interface ---------------------------------------------------------------
    def transmit(self, apdu: bytes, wait: Wait = real_time) -> bytes:
        """The answer to one APDU. The card's working time (delays, a hung card) passes
        through `wait`, so the reader that carries the card decides what time is: real
        time for vpcd, time the virtual reader bounds by its deadline."""
        if self.faults.tear_after is not None and len(self.log) >= self.faults.tear_after:
            raise CardTorn(self.name)
        self._wait = wait
        if self.faults.silent_after is not None and len(self.log) >= self.faults.silent_after:
            self.log.append(apdu)
            wait(math.inf)
            raise CardTorn(self.name)  # only a wait that ends (the card lifted) gets here
        self.log.append(apdu)
        if self.faults.apdu_delay_s:
            wait(self.faults.apdu_delay_s)
        for prefix, answer in self.faults.raw_responses.items():
            if apdu.hex().upper().startswith(prefix.upper()):
                return bytes.fromhex(answer)
        if len(apdu) < 4:
            return b"\x67\x00"
        if apdu[0] != 0x00:
            return b"\x6E\x00"
        handler = _HANDLERS.get(apdu[1])
        if handler is None:
            return b"\x6D\x00"
        return handler(self, apdu)

    def reset(self) -> None:
        """Power cycle: a new presence in the field starts with nothing selected."""
        self._selected, self._ef_current, self._pending = None, False, b""

    # -- responses ------------------------------------------------------------------------
    def _answer(self, data: bytes, le: int | None) -> bytes:
        """Answer `data` to a command with Le (0 = up to 256) in the configured style."""
        style = self.faults.style
        if style == "6Cxx" and le is not None and data and le != (len(data) & 0xFF):
            return bytes([0x6C, len(data) & 0xFF])
        if style == "61xx" and data:
            self._pending = data
            return bytes([0x61, min(len(data), 256) & 0xFF])
        if le not in (None, 0) and len(data) < le:
            return data + b"\x62\x82"  # the EF ended before Le bytes
        return data + SW_OK

    def _select(self, apdu: bytes) -> bytes:
        if apdu[2] != 0x04 or len(apdu) < 5:
            return b"\x6A\x86"
        aid = apdu[5:5 + apdu[4]]
        if aid not in self.apps:
            self._selected = None
            return b"\x6A\x82"
        self._selected, self._ef_current = aid, False
        return SW_OK

    def _read_binary(self, apdu: bytes) -> bytes:
        if self._selected is None:
            return b"\x69\x85"
        p1, p2 = apdu[2], apdu[3]
        le = apdu[4] if len(apdu) == 5 else 0
        if p1 & 0x80:
            if p1 & 0x1F != 1:
                return b"\x6A\x82"
            self._ef_current, offset = True, p2
        elif not self._ef_current:
            return b"\x69\x86"
        else:
            offset = ((p1 << 8) | p2) & 0x7FFF
        content = self.apps[self._selected]
        if offset > len(content):
            return b"\x6B\x00"
        return self._answer(content[offset:offset + (le or 256)], le)

    def _internal_authenticate(self, apdu: bytes) -> bytes:
        if self._selected is None:
            return b"\x69\x85"
        if len(apdu) < 5 or apdu[4] != 32 or len(apdu) < 37:
            return b"\x67\x00"
        if self.faults.sign_delay_s:
            self._wait(self.faults.sign_delay_s)
        key = ec.generate_private_key(ec.SECP256R1()) if self.faults.wrong_key else self.private_key
        le = apdu[37] if len(apdu) > 37 else None
        return self._answer(sign_raw(key, AUTH_PREFIX + apdu[5:37]), le)

    def _get_response(self, apdu: bytes) -> bytes:
        if not self._pending:
            return b"\x69\x85"
        want = apdu[4] or 256
        chunk, self._pending = self._pending[:want], self._pending[want:]
        if self._pending:
            return chunk + bytes([0x61, min(len(self._pending), 256) & 0xFF])
        return chunk + SW_OK

    # -- the *.card file format of the virtual reader's feed -------------------------------
    def to_json(self) -> str:
        scalar = self.private_key.private_numbers().private_value
        return json.dumps({
            "name": self.name,
            "apps": {aid.hex().upper(): ef.hex() for aid, ef in self.apps.items()},
            "private_scalar_hex": f"{scalar:064x}",
            "faults": asdict(self.faults),
            "hold_s": self.hold_s,
        })

    @classmethod
    def from_json(cls, text: str) -> VirtualCard:
        spec: dict[str, Any] = json.loads(text)
        return cls(
            apps={bytes.fromhex(a): bytes.fromhex(ef) for a, ef in spec["apps"].items()},
            private_key=private_key_from_scalar(bytes.fromhex(spec["private_scalar_hex"])),
            faults=CardFaults(**spec.get("faults", {})),
            name=spec.get("name", "card"),
            hold_s=float(spec.get("hold_s", 0.0)),
        )

    @classmethod
    def from_vector(cls, vector: dict[str, Any], **faults: Any) -> VirtualCard:
        """A card of ../shared/spec/vectors/card-ap-v1.json."""
        return cls(
            apps={bytes.fromhex(vector["aid"]): bytes.fromhex(vector["ef_record_hex"])},
            private_key=private_key_from_scalar(bytes.fromhex(vector["card_private_scalar_hex"])),
            faults=CardFaults(**faults),
            name=vector["name"],
        )


_HANDLERS: dict[int, Callable[[VirtualCard, bytes], bytes]] = {
    0xA4: VirtualCard._select,
    0xB0: VirtualCard._read_binary,
    0x88: VirtualCard._internal_authenticate,
    0xC0: VirtualCard._get_response,
}
