"""The kiosk screen's server: a page on 127.0.0.1 that Chromium shows full screen.

A separate process from the daemon (`sukumo-reader kiosk`), so a crashed browser or
kiosk never touches a tap. It takes the daemon's verdicts as UDP datagrams on loopback
(reader/feedback/screen.py) and pushes each to the page at once as a Server-Sent Event;
the staff line is read from status.json once a second. The daemon sends a verdict's
meaning only; the words on the page are chosen here, in the kiosk's own language
(reader/feedback/words.py, `<html lang>` too). Standard library only
(`http.server`, one thread per connection): the page is one file and one event stream.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from reader.config import Settings
from reader.feedback.verdict import Verdict
from reader.feedback.words import page_texts, shown
from reader.kiosk.staff import staff_view
from reader.system.logs import fields

log = logging.getLogger(__name__)
HEARTBEAT_S = 15.0


class Kiosk:
    def __init__(self, settings: Settings) -> None:
        fb = settings.feedback
        self.status_file = settings.paths.status_file
        self.hold_s = fb.screen_hold_s
        self.verdict: dict[str, Any] | None = None
        self.staff: dict[str, Any] = staff_view(None)
        self._clients: list[Queue[tuple[str, dict[str, Any]]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", fb.screen_feed_port))
        self._udp.settimeout(0.5)
        self.http = ThreadingHTTPServer(("127.0.0.1", fb.screen_http_port), _handler(self))
        self.http.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.http.server_address[:2]
        return f"http://{host!s}:{port}/"

    def serve(self) -> None:
        """Until `stop()`: the datagram and status threads, the HTTP server here."""
        threads = [threading.Thread(target=self._datagrams, daemon=True),
                   threading.Thread(target=self._status, daemon=True)]
        for t in threads:
            t.start()
        log.info("kiosk serving", **fields(url=self.url))
        self.http.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._stop.set()
        self.http.shutdown()

    def close(self) -> None:
        self.http.server_close()
        self._udp.close()

    # -- sources ------------------------------------------------------------------------
    def _datagrams(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._udp.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                verdict = Verdict.from_json(json.loads(data))
            except ValueError:
                continue  # not ours: the port is loopback-only, but be strict all the same
            if verdict is not None:  # the daemon sent the meaning; the words are ours
                self._publish("verdict", shown(verdict))

    def _status(self) -> None:
        while not self._stop.wait(1.0):
            try:
                status = json.loads(Path(self.status_file).read_text())
            except (OSError, ValueError):
                status = None
            view = staff_view(status if isinstance(status, dict) else None)
            if view != self.staff:
                self._publish("staff", view)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            if kind == "verdict":
                self.verdict = data
            else:
                self.staff = data
            for client in self._clients:
                client.put((kind, data))

    # -- one page's event stream ----------------------------------------------------------
    def stream(self, write: Any) -> None:
        inbox: Queue[tuple[str, dict[str, Any]]] = Queue()
        with self._lock:
            self._clients.append(inbox)
            write("config", {"hold_s": self.hold_s})
            write("staff", self.staff)
        try:
            while not self._stop.is_set():
                try:
                    kind, data = inbox.get(timeout=HEARTBEAT_S)
                except Empty:
                    write(None, None)  # a comment line: tells a dead browser from a quiet one
                    continue
                write(kind, data)
        finally:
            with self._lock:
                self._clients.remove(inbox)


def page() -> bytes:
    """page.html with its own texts filled in, in the kiosk's language."""
    text = resources.files("reader.kiosk").joinpath("page.html").read_text("utf-8")
    for key, value in page_texts().items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text.encode()


def _handler(kiosk: Kiosk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name for it
            if self.path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", page())
            elif self.path == "/events":
                self._events()
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found")

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

            def write(kind: str | None, data: dict[str, Any] | None) -> None:
                if kind is None:
                    chunk = b": keep-alive\n\n"
                else:
                    text = json.dumps(data, ensure_ascii=False)
                    chunk = f"event: {kind}\ndata: {text}\n\n".encode()
                self.wfile.write(chunk)
                self.wfile.flush()

            # The browser went away: the kiosk goes on for the next one.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                kiosk.stream(write)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("kiosk http", **fields(request=format % args))

    return Handler
