"""The kiosk's page and event stream over HTTP on 127.0.0.1, hardened for a shared machine.

- The port: under systemd, `sukumo-reader-kiosk.socket` holds it (socket activation,
  reader/system/sdnotify.py: `listen_sockets`), so while the kiosk restarts no other
  user can bind it and serve the browser a page of its own; without systemd (a laptop,
  the tests) the kiosk binds it itself.
- The Host header must name this server (127.0.0.1 or localhost, this port): a page of
  another site that a DNS rebinding points here gets 421, never the screen's feed.
- With `[feedback] screen_viewers`, only those users' connections are served at all
  (peers.py: the peer's uid from the kernel), before a thread or a slot is spent.
- Bounded: at most MAX_CONNECTIONS at once (more are closed unanswered), and a
  connection that sends nothing or reads nothing for TIMEOUT_S is dropped, so browsers
  that never read cannot hold threads or memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from reader.kiosk.peers import peer_uid
from reader.system.logs import fields

if TYPE_CHECKING:
    from reader.kiosk.server import Kiosk

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 32
TIMEOUT_S = 10.0


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kiosk: Kiosk, port: int, inherited: socket.socket | None = None,
                 viewers: frozenset[int] | None = None) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.viewers = viewers
        self.refused = 0  # connections from a user not in `viewers`
        if inherited is None:
            super().__init__(("127.0.0.1", port), _handler(kiosk))
        else:  # systemd listens already; we only accept
            super().__init__(("127.0.0.1", port), _handler(kiosk), bind_and_activate=False)
            self.socket.close()
            self.socket = inherited
            self.server_address = inherited.getsockname()
        self.port = int(self.server_address[1])
        self.ours = (str(self.server_address[0]), self.port)
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        if self.port == 80:
            self.hosts |= {"127.0.0.1", "localhost"}

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.viewers is not None and peer_uid(client_address, self.ours) not in (
                self.viewers):
            self.refused += 1  # another account's browser or script: not a word for it
            self.shutdown_request(request)
            return
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: the real browser's retry gets in later
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _handler(kiosk: Kiosk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = TIMEOUT_S  # socketserver applies it to each connection, reads and writes

        def do_GET(self) -> None:  # http.server's name for it
            server: PageServer = self.server  # type: ignore[assignment]
            if (self.headers.get("Host") or "").lower() not in server.hosts:
                kiosk.dropped_requests += 1
                self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain; charset=utf-8",
                           b"misdirected request\n")
            elif self.path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", kiosk.page())
            elif self.path == "/events":
                self._events()
            elif self.path == "/health":
                self._send(HTTPStatus.OK, "application/json",
                           json.dumps(kiosk.health()).encode())
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _events(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

            def write(kind: str, data: dict[str, Any]) -> None:
                text = json.dumps(data, ensure_ascii=False)
                self.wfile.write(f"event: {kind}\ndata: {text}\n\n".encode())
                self.wfile.flush()

            # The browser went away or stopped reading (TIMEOUT_S): the kiosk goes on.
            with contextlib.suppress(OSError):
                # After a lost stream (a kiosk restart, a viewer displaced) the browser
                # comes back within a second, not EventSource's default three.
                self.wfile.write(b"retry: 1000\n\n")
                kiosk.stream(write)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("kiosk http", **fields(request=format % args))

    return Handler
