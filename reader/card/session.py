"""The card side of one tap, as a sans-I/O state machine (card-ap-v1 §2).

Theory of operation: `CardSession` never touches a reader. The driver loops

    while (cmd := session.next_command()) is not None:
        session.receive(link.transmit(cmd, time_left))

and then reads `session.phase`. After EF.RECORD is read the session pauses in
`AWAIT_CHALLENGE`: the caller checks the record first (no point asking a card with a
forged record to sign) and then calls `authenticate(challenge)` or `finish()`.
Every status word of the spec's table is handled here, once, for every command:
61xx -> GET RESPONSE, 6Cxx -> the same command again with Le = xx, 62 82 -> short
data is valid. The session is bounded: at most MAX_EXCHANGES APDUs, a record of at
most 2048 bytes, a few 6Cxx retries per command; a card that never finishes ends
with `card_error`, never a loop.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from reader.card.profiles import is_national
from reader.card.reasons import Reason
from reader.card.record import MAX_RECORD_LEN

AUTH_PREFIX = b"SUKUMO-ID-AUTH-v1"
SFI_RECORD = 1
# 2048-byte record / 256 per READ = 9 reads, each maybe split by 61xx; plus SELECT, AUTH.
MAX_EXCHANGES = 64
MAX_WRONG_LE_RETRIES = 2


class Phase(enum.Enum):
    SELECT = "select"
    READ = "read"
    AWAIT_CHALLENGE = "await_challenge"
    AUTHENTICATE = "authenticate"
    DONE = "done"


@dataclass
class Exchange:
    """One command/response pair, for `sukumo-reader tap` and the transcript tests."""

    step: str
    command: bytes
    response: bytes = b""


@dataclass
class SessionResult:
    reason: Reason | None = None  # None while fine; not_registered / bad_record / card_error
    detail: str = ""
    ef_record: bytes | None = None  # the N record bytes (length prefix removed)
    signature: bytes | None = None  # INTERNAL AUTHENTICATE answer, when it ran
    transcript: list[Exchange] = field(default_factory=list)


def select_command(aid: bytes) -> bytes:
    if is_national(aid):
        # Never, whatever a profile says: the national APs hold the individual number.
        raise ValueError("refusing to select a national (J-LIS) application")
    return bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid


def read_binary_command(offset: int | None, le: int) -> bytes:
    le_byte = le & 0xFF  # Le 256 is encoded 00
    if offset is None:  # first read: by short EF identifier, offset 0
        return bytes([0x00, 0xB0, 0x80 | SFI_RECORD, 0x00, le_byte])
    return bytes([0x00, 0xB0, (offset >> 8) & 0x7F, offset & 0xFF, le_byte])


def internal_authenticate_command(challenge: bytes) -> bytes:
    return bytes([0x00, 0x88, 0x00, 0x00, len(challenge)]) + challenge + b"\x00"


def with_le(command: bytes, le: int) -> bytes:
    """The same short APDU with its Le replaced (or added, to a case 1 / case 3 command)."""
    if len(command) <= 5:
        return command[:4] + bytes([le & 0xFF])
    return command[:5 + command[4]] + bytes([le & 0xFF])


class CardSession:
    def __init__(self, aid: bytes | Sequence[bytes]) -> None:
        """`aid`: the AP's AID, or several (the home town's first): a 6A82 on SELECT
        moves to the next; the last one's 6A82 is `not_registered`."""
        self.phase = Phase.SELECT
        self.result = SessionResult()
        aids = [aid] if isinstance(aid, bytes) else list(aid)
        if not aids:
            raise ValueError("no AID to select")
        self._selects = [select_command(a) for a in aids]  # each passes the national guard
        self._pending: bytes | None = self._selects.pop(0)
        self._step = "SELECT"
        self._buffer = b""  # data collected for the current command (GET RESPONSE chains)
        self._retries = 0
        self._record = b""  # EF.RECORD bytes read so far, length prefix included
        self._expected = 0  # 2 + N once the prefix is known
        self._asked = 0  # Le of the current READ BINARY

    # -- driver interface -------------------------------------------------------------
    def next_command(self) -> bytes | None:
        """The next command APDU to send, or None when the session waits or is over."""
        if self.phase in (Phase.AWAIT_CHALLENGE, Phase.DONE):
            return None
        if len(self.result.transcript) >= MAX_EXCHANGES:
            self._fail(Reason.CARD_ERROR, "card never finished the sequence")
            return None
        command = self._pending
        assert command is not None
        self.result.transcript.append(Exchange(self._step, command))
        return command

    def receive(self, response: bytes) -> None:
        """Feed the response APDU (data + SW1 SW2) to the last command."""
        if self.phase in (Phase.AWAIT_CHALLENGE, Phase.DONE):
            raise RuntimeError("receive() without a command in flight")
        self.result.transcript[-1].response = response
        if len(response) < 2:
            self._fail(Reason.CARD_ERROR, "response shorter than a status word")
            return
        data, sw1, sw2 = response[:-2], response[-2], response[-1]
        if sw1 == 0x61:
            self._buffer += data
            self._step = "GET RESPONSE"
            self._pending = bytes([0x00, 0xC0, 0x00, 0x00, sw2])
            return
        if sw1 == 0x6C:
            self._retries += 1
            if self._retries > MAX_WRONG_LE_RETRIES:
                self._fail(Reason.CARD_ERROR, "card keeps asking for another Le")
                return
            # "Resend the same command with Le = XX". After a GET RESPONSE that is the
            # GET RESPONSE again: what the earlier 61xx answers delivered stays valid.
            self._step += " (Le)"
            self._pending = with_le(self._pending or b"", sw2)
            if self._pending[1] == 0xB0:
                self._asked = sw2 or 256
            return
        data = self._buffer + data
        self._buffer = b""
        self._retries = 0
        short = (sw1, sw2) == (0x62, 0x82) and self.phase is not Phase.SELECT  # check 1: 90 00
        if (sw1, sw2) == (0x90, 0x00) or short:
            self._on_success(data, short=short)
        elif (sw1, sw2) == (0x6A, 0x82) and self.phase is Phase.SELECT:
            if self._selects:  # not this town's AP: perhaps a neighbouring town's
                self._start("SELECT", self._selects.pop(0))
                return
            self._fail(Reason.NOT_REGISTERED, "the card has no Sukumo ID application")
        else:
            self._fail(Reason.CARD_ERROR, f"{self._step} answered {sw1:02X} {sw2:02X}")

    def authenticate(self, challenge: bytes) -> None:
        """Go on with INTERNAL AUTHENTICATE over this 32-byte challenge."""
        if self.phase is not Phase.AWAIT_CHALLENGE:
            raise RuntimeError("authenticate() before the record was read")
        if len(challenge) != 32:
            raise ValueError("challenge must be 32 bytes")
        self.phase = Phase.AUTHENTICATE
        self._start("INTERNAL AUTHENTICATE", internal_authenticate_command(challenge))

    def finish(self) -> None:
        """End without INTERNAL AUTHENTICATE (profile without card authentication)."""
        self.phase = Phase.DONE

    # -- internals ----------------------------------------------------------------------
    def _start(self, step: str, command: bytes) -> None:
        self._step, self._pending, self._retries = step, command, 0

    def _on_success(self, data: bytes, short: bool) -> None:
        if self.phase is Phase.SELECT:
            self.phase = Phase.READ
            self._asked = 256
            self._start("READ BINARY", read_binary_command(None, 256))
        elif self.phase is Phase.READ:
            self._on_read(data, short)
        elif self.phase is Phase.AUTHENTICATE:
            self.result.signature = data
            self.phase = Phase.DONE

    def _on_read(self, data: bytes, short: bool) -> None:
        if len(data) > self._asked:
            self._fail(Reason.CARD_ERROR,
                       f"READ BINARY returned {len(data)} bytes for Le {self._asked}")
            return
        self._record += data
        if not self._expected and len(self._record) >= 2:
            n = int.from_bytes(self._record[:2], "big")
            if not 1 <= n <= MAX_RECORD_LEN:
                self._fail(Reason.BAD_RECORD, f"EF.RECORD length {n} outside 1..{MAX_RECORD_LEN}")
                return
            self._expected = 2 + n
        if self._expected and len(self._record) >= self._expected:
            # Anything past 2 + N is not part of the record (spec: read exactly 2 + N).
            self.result.ef_record = self._record[2:self._expected]
            self.phase = Phase.AWAIT_CHALLENGE
            return
        if short or not data:
            # 62 82 or an empty answer: the EF ended before the record did.
            self._fail(Reason.BAD_RECORD, "EF.RECORD ended before its stated length")
            return
        offset = len(self._record)
        want = (self._expected or 2) - offset
        self._asked = min(256, max(want, 1))
        self._start("READ BINARY", read_binary_command(offset, self._asked))

    def _fail(self, reason: Reason, detail: str) -> None:
        self.result.reason = reason
        self.result.detail = detail
        self.phase = Phase.DONE
