"""A Type 4B card (ISO/IEC 14443-4 over 14443-3B) for nfcpy's `udp:host:port` device.

nfcpy's udp driver (nfc/clf/udp.py) plays the reader: each frame is one datagram
`<brty> <hex>` ("106B 0500 10"), `RFOFF` when it drops the field. This peer plays the card
the way an RC-S380 sees a My Number Card: SENSB_REQ `05…` → SENSB_RES `50…` (12 bytes,
carrying FSCI and FWI), ATTRIB `1D <NFCID0> …` → `00`, then ISO-DEP blocks: I-blocks
carrying APDUs (both directions chained when over the frame size, nfcpy asks for the next
part with R(ACK)), R(NAK) answered by R(ACK) (nfcpy's presence check) or a resend,
S(WTX) sent while the VirtualCard is still working, S(DESELECT). A torn card goes
silent, as a card out of the field does: nfcpy then times out, retries and gives up.

With no card on it, the peer answers a SENSB_REQ with an empty frame, which nfcpy's
driver takes as "nothing heard" at once, like a real reader's few-ms sense timeout;
a silent peer would cost the driver's fixed 1 s receive timeout per poll instead.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from reader.emulator.card import CardTorn, VirtualCard

BRTY = b"106B"
FWI = 8  # frame waiting time 4096/fc * 2**8 ≈ 77 ms; slower answers go through S(WTX)
FWT_S = 4096 / 13.56e6 * 2**FWI
FSCI = 8  # the card takes 256-byte frames
_S_DESELECT, _S_WTX = 0xC2, 0xF2


class Type4BPeer:
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.05)
        self.address: tuple[str, int] = self._sock.getsockname()
        self.card: VirtualCard | None = None
        self.torn = threading.Event()  # set when a card tore itself away mid-sequence
        self._lock = threading.RLock()
        self._lifted = threading.Event()  # of the card in the field now
        self._stop = threading.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="type4b-card")
        self._reset_link()
        self._peer: tuple[str, int] = ("127.0.0.1", 0)  # the reader's address, for S(WTX)
        self._thread = threading.Thread(target=self._serve, name="type4b-peer", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        """The nfcpy device path that reaches this peer."""
        return f"udp:{self.address[0]}:{self.address[1]}"

    def tap(self, card: VirtualCard) -> None:
        self._lifted.set()  # a card still working leaves with the next tap
        with self._lock:
            self._lifted = threading.Event()
            card.reset()
            self.card = card
            self.torn.clear()
            self._reset_link()

    def lift(self) -> None:
        self._lifted.set()  # first: a card still working holds the lock until it stops
        with self._lock:
            self.card = None
            self._reset_link()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._sock.close()

    # -- the card side of the radio ------------------------------------------------------
    def _reset_link(self) -> None:
        self._active = False
        self._block = 1  # ISO-DEP: the PICC's current block number starts at 1
        self._last: bytes = b""
        self._rx_chain = b""
        self._tx_parts: list[bytes] = []
        self._frame_size = 256

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                datagram, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._peer = peer
                for reply in self._handle(datagram):
                    self._send(reply, peer)

    def _send(self, frame: bytes, peer: tuple[str, int]) -> None:
        self._sock.sendto((BRTY + b" " + frame.hex().encode()).strip(), peer)

    def _handle(self, datagram: bytes) -> list[bytes]:
        if datagram.startswith(b"RFOFF"):
            if self.card is not None:
                self.card.reset()  # field off: the card loses power
            self._reset_link()
            return []
        parts = datagram.split()
        if len(parts) != 2 or parts[0] != BRTY:
            return []
        frame = bytes.fromhex(parts[1].decode())
        if not frame:
            return []
        if self.card is None:
            return [b""] if frame[0] == 0x05 else []  # see the module docstring
        if frame[0] == 0x05:
            self._reset_link()
            return [self._sensb_res()]
        if frame[0] == 0x1D and frame[1:5] == self._nfcid():
            self._active = True
            self._frame_size = (16, 24, 32, 40, 48, 64, 96, 128, 256)[min(frame[6] & 0x0F, 8)]
            return [b"\x00"]  # MBLI 0, CID 0
        if not self._active:
            return []
        return self._iso_dep(frame)

    def _nfcid(self) -> bytes:
        assert self.card is not None
        return zlib.crc32(self.card.name.encode()).to_bytes(4, "big")

    def _sensb_res(self) -> bytes:
        # Protocol info: 106 kbps only; FSCI | ISO 14443-4 compliant; FWI | ADC 0 | FO 0.
        protocol = bytes([0x00, FSCI << 4 | 0x01, FWI << 4])
        return b"\x50" + self._nfcid() + b"\x00\x00\x00\x00" + protocol

    def _iso_dep(self, frame: bytes) -> list[bytes]:
        pcb, block = frame[0], frame[0] & 0x01
        if pcb & 0xE2 == 0x02:  # I-block
            self._block = block
            if pcb & 0x10:  # the reader chains its command: ask for the rest
                self._rx_chain += frame[1:]
                return [self._remember(bytes([0xA2 | block]))]
            command, self._rx_chain = self._rx_chain + frame[1:], b""
            response = self._run(command)
            if response is None:
                return []  # torn: out of the field, nothing answers
            size = self._frame_size - 3  # PCB + CRC
            self._tx_parts = [response[i:i + size] for i in range(0, len(response), size)]
            return [self._next_part()]
        if pcb & 0xE6 == 0xA2:  # R-block
            nak = bool(pcb & 0x10)
            if not nak and block != self._block and self._tx_parts:
                self._block = block
                return [self._next_part()]
            if nak and block != self._block:
                return [self._remember(bytes([0xA2 | self._block]))]  # presence check
            return [self._last] if self._last else []
        if pcb == _S_DESELECT:
            self._active = False
            return [bytes([_S_DESELECT])]
        return []  # a late S(WTX) answer or noise

    def _next_part(self) -> bytes:
        part = self._tx_parts.pop(0)
        chaining = 0x10 if self._tx_parts else 0x00
        return self._remember(bytes([0x02 | chaining | self._block]) + part)

    def _remember(self, frame: bytes) -> bytes:
        self._last = frame
        return frame

    def _run(self, command: bytes) -> bytes | None:
        """The card's answer; asks the reader for more time (S(WTX)) while it works."""
        assert self.card is not None
        lifted = self._lifted

        def card_time(seconds: float) -> None:
            if lifted.wait(None if math.isinf(seconds) else seconds):
                raise CardTorn("lifted while working")

        job: Future[bytes] = self._worker.submit(self.card.transmit, command, card_time)
        while True:
            try:
                return job.result(timeout=FWT_S / 2)
            except CardTorn:
                self.card = None
                self.torn.set()
                return None
            except FutureTimeout:
                self._ask_for_time()

    def _ask_for_time(self) -> None:
        # The reader echoes S(WTX) and then waits WTXM * FWT for our next frame.
        with contextlib.suppress(OSError):
            self._sock.sendto(BRTY + b" " + bytes([_S_WTX, 0x01]).hex().encode(), self._peer)
            self._sock.recvfrom(4096)
