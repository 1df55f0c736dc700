"""A virtual card on a real PC/SC stack: a VirtualCard as a TCP client of vsmartcard's vpcd.

vpcd (Debian `vsmartcard-vpcd`) is a pcscd reader driver that listens on a TCP port
(35963 by default, the next port for its second slot); a "virtual ICC" connects to it.
Each message is a 2-byte big-endian length, then the payload. A one-byte payload is a
control code (0 power off, 1 power on, 2 reset, 4 send the ATR); anything longer is a
command APDU, answered with its response APDU. The card is in the field exactly while
its connection is open, so `tap` connects and `lift` disconnects, and a card torn
away mid-sequence (its `tear_after` fault) simply closes the connection.

Run it in-process (`VpcdCard(port).tap(card)`) or as a process for a manual test
against a running daemon:
    python -m reader.emulator.vpcd --port 35963 some.card     (Ctrl-C lifts the card)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import socket
import struct
import threading
import time
from pathlib import Path

from reader.emulator.card import CardTorn, VirtualCard, Wait
from reader.system import i18n
from reader.system.i18n import _

DEFAULT_PORT = 35963

_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0, 1, 2, 4


class _Lifted(Exception):
    """Taken off the reader while still working on an APDU."""


class VpcdCard:
    """One slot of a vpcd reader, with at most one card on it at a time."""

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.card: VirtualCard | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._lifted = threading.Event()  # of the card on the reader now
        self.torn = threading.Event()  # set when a card tore itself away

    @property
    def present(self) -> bool:
        return self._sock is not None

    def tap(self, card: VirtualCard, connect_timeout: float = 5.0) -> None:
        """Put `card` on the reader (lifting any card already there).

        Retries the connection for `connect_timeout` s: vpcd listens only once pcscd
        has loaded it, so a test may tap while pcscd is still starting.
        """
        self.lift()
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                sock = socket.create_connection(self.address, timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        card.reset()
        self.torn.clear()
        lifted = threading.Event()
        with self._lock:
            self.card, self._sock, self._lifted = card, sock, lifted
        self._thread = threading.Thread(target=self._serve, args=(sock, card, lifted),
                                        name=f"vpcd-card-{self.address[1]}", daemon=True)
        self._thread.start()

    def lift(self) -> None:
        """Take the card off the reader: vpcd sees its ICC disconnect."""
        with self._lock:
            sock, self._sock, self.card = self._sock, None, None
            self._lifted.set()  # a card still working (slow, hung) stops with the lift
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    close = lift

    def _serve(self, sock: socket.socket, card: VirtualCard, lifted: threading.Event) -> None:
        def card_time(seconds: float) -> None:
            if lifted.wait(None if math.isinf(seconds) else seconds):
                raise _Lifted

        try:
            while True:
                payload = _receive(sock)
                if payload is None:
                    break  # vpcd (pcscd) went away: the card is no longer on a reader
                answer = self._answer(card, payload, card_time)
                if answer is not None:
                    sock.sendall(struct.pack(">H", len(answer)) + answer)
        except CardTorn:
            self.torn.set()
        except (OSError, _Lifted):
            pass  # lifted from another thread
        with self._lock:
            if self._sock is sock:
                self._sock, self.card = None, None
        with contextlib.suppress(OSError):
            sock.close()

    @staticmethod
    def _answer(card: VirtualCard, payload: bytes, wait: Wait) -> bytes | None:
        if len(payload) == 1:
            if payload[0] == _GET_ATR:
                return card.atr
            if payload[0] in (_POWER_OFF, _POWER_ON, _RESET):
                card.reset()
            return None  # control codes other than GET ATR get no answer
        return card.transmit(payload, wait)


def _receive(sock: socket.socket) -> bytes | None:
    header = _read_exactly(sock, 2)
    if header is None:
        return None
    (length,) = struct.unpack(">H", header)
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        # vpcd writes the length and the APDU in two sends without TCP_NODELAY; ACKing at
        # once stops its Nagle wait (40 ms per APDU against Linux's delayed ACK).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main(argv: list[str] | None = None) -> int:
    i18n.install()  # before the parser: argparse's own words in the same language
    parser = argparse.ArgumentParser(description=_("Tap a virtual card on pcscd's vpcd reader."))
    parser.add_argument("card", type=Path, help=_("a *.card file (VirtualCard JSON)"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    slot = VpcdCard(args.port, args.host)
    slot.tap(VirtualCard.from_json(args.card.read_text()))
    print(_("card on vpcd {host}:{port}; Ctrl-C lifts it").format(host=args.host,
                                                                   port=args.port))
    try:
        while slot.present:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    slot.lift()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
