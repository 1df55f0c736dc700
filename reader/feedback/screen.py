"""The daemon's side of the kiosk screen: each verdict as one UDP datagram on loopback.

The kiosk (`sukumo-reader kiosk`, reader/kiosk/) is a separate process that pushes what
it receives to the browser. A datagram to a port nobody listens on is simply dropped, so
a crashed kiosk or browser never delays or fails a tap: `sendto` on a non-blocking
socket returns at once, and any error is counted, not raised.
"""

from __future__ import annotations

import json
import socket

from reader.feedback.verdict import Verdict


class ScreenFeed:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.failures = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def show(self, verdict: Verdict) -> None:
        payload = json.dumps(verdict.to_json(), ensure_ascii=False).encode()
        try:
            self._sock.sendto(payload, self.address)
        except OSError:  # ECONNREFUSED from an earlier datagram, a full buffer: no screen
            self.failures += 1

    def close(self) -> None:
        self._sock.close()
