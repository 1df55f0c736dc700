"""The kiosk screen's server: what the page shows, and never more than the truth.

A separate process from the daemon (`sukumo-reader kiosk`), so a crashed browser or
kiosk never touches a tap. It takes the daemon's verdicts and heartbeats from its own
Unix socket (feed.py) and pushes each to the page at once as a Server-Sent Event
(http.py); the staff line is read from status.json once a second. The daemon sends a
verdict's meaning only; the words on the page are chosen here, in the kiosk's own
language (reader/feedback/words.py, `<html lang>` too).

The screen invites a tap only while the daemon keeps saying (four times a second) that
it takes taps with its reader (`service` "ready"). Silence for SILENT_S, a daemon stopping,
a reader gone: the page shows "this terminal cannot be used" and the staff line says
why. A kiosk that loses its own socket says so and exits, for systemd to restart it; so
does one whose threads fail, rather than living on deaf.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any

from reader.config import Settings
from reader.errors import ConfigError
from reader.feedback.screen import Beat
from reader.feedback.verdict import Verdict
from reader.feedback.words import page_texts, shown
from reader.kiosk.feed import FeedSocket
from reader.kiosk.http import PageServer
from reader.kiosk.peers import viewer_uids
from reader.kiosk.staff import FEED_LOST, staff_view
from reader.system.i18n import _
from reader.system.logs import fields
from reader.system.sdnotify import listen_sockets

log = logging.getLogger(__name__)
SILENT_S = 1.0  # no heartbeat for this long: the daemon is gone (it beats every 0.25 s)
TICK_S = 0.1
KEEPALIVE_S = 1.0  # the page treats 3 s without any event as a lost kiosk
MAX_VIEWERS = 8  # one browser in real life; more are the oldest first to go
VIEWER_BACKLOG = 32  # events waiting for one viewer; a viewer this far behind is dropped
STATUS_MAX_BYTES = 64 * 1024
EXIT_FEED_LOST = 3  # cli: something missing in the environment


class _Viewer:
    def __init__(self) -> None:
        self.inbox: Queue[tuple[str, dict[str, Any]]] = Queue(VIEWER_BACKLOG)
        self.gone = threading.Event()

    def offer(self, item: tuple[str, dict[str, Any]]) -> None:
        try:
            self.inbox.put_nowait(item)
        except Full:  # it does not read: let it go rather than hold events for it
            self.gone.set()


class Kiosk:
    def __init__(self, settings: Settings) -> None:
        fb = settings.feedback
        self.status_file = settings.paths.status_file
        self.hold_s = fb.screen_hold_s
        self.exit_code = 0
        self.dropped_requests = 0
        self.service = str(Beat.STARTING)
        self._beat_at = -SILENT_S  # heard nothing yet: closed until the daemon speaks
        self._beat = Beat.STARTING
        self._status: dict[str, Any] | None = None
        self.staff = staff_view(None, service=self.service)
        self._viewers: list[_Viewer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        viewers = viewer_uids(fb.screen_viewers)  # a mistake here before anything is bound
        self.feed = FeedSocket(fb.screen_feed)
        inherited = listen_sockets()
        if not inherited and os.environ.get("INVOCATION_ID"):  # systemd, without the socket
            log.warning("kiosk page port not held by systemd: while the kiosk restarts "
                        "another user could take it; enable sukumo-reader-kiosk.socket",
                        **fields(port=fb.screen_http_port))
        try:
            self.http = PageServer(self, fb.screen_http_port,
                                   inherited[0] if inherited else None, viewers)
        except OSError as exc:  # the port taken (no socket unit): say which, leave no socket
            self.feed.close()
            raise ConfigError(_("setting feedback.screen_http_port = {port}: cannot serve "
                                "the page there: {why}. Another program holds the port, or "
                                "sukumo-reader-kiosk.socket does and did not pass it: start "
                                "the kiosk with `systemctl start sukumo-reader-kiosk`").format(
                port=fb.screen_http_port, why=exc.strerror or exc)) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/"

    @property
    def open(self) -> bool:
        return self.service == Beat.READY

    def serve(self) -> None:
        """Until `stop()`: the feed and watch threads, the HTTP server here."""
        for target in (self._receive, self._watch):
            threading.Thread(target=self._guarded(target), daemon=True,
                             name=f"kiosk{target.__name__}").start()
        log.info("kiosk serving", **fields(url=self.url, feed=str(self.feed.path)))
        self.http.serve_forever(poll_interval=0.2)

    def stop(self, exit_code: int = 0) -> None:
        self.exit_code = self.exit_code or exit_code
        self._stop.set()
        self.http.shutdown()

    def close(self) -> None:
        self.http.server_close()
        self.feed.close()

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception:  # a bug: exit for systemd rather than live on deaf
                if self._stop.is_set():
                    return  # its socket closed under it at shutdown
                log.exception("kiosk thread failed; exiting for a restart")
                threading.Thread(target=self.stop, args=(70,)).start()
        return run

    # -- sources ------------------------------------------------------------------------
    def _receive(self) -> None:
        while not self._stop.is_set():
            item = self.feed.receive()
            if isinstance(item, Beat):
                self._beat, self._beat_at = item, time.monotonic()
            elif isinstance(item, Verdict):  # the daemon sent the meaning; words are ours
                self._publish("verdict", shown(item))

    def _watch(self) -> None:
        next_status = next_keepalive = 0.0
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            if not self.feed.intact():
                self._set_service(FEED_LOST)
                log.error("kiosk feed socket gone; exiting for a restart",
                          **fields(feed=str(self.feed.path)))
                time.sleep(KEEPALIVE_S)  # long enough for the page to show why
                self.stop(EXIT_FEED_LOST)
                return
            silent = now - self._beat_at > SILENT_S
            self._set_service(Beat.STOPPED if silent else self._beat)
            if now >= next_status:
                self._status = _read_status(self.status_file)
                self._set_staff()
                next_status = now + 1.0
            if now >= next_keepalive:
                self._publish("service", {"open": self.open})
                next_keepalive = now + KEEPALIVE_S

    def _set_service(self, service: str) -> None:
        if service != self.service:
            log.info("kiosk screen", **fields(service=service, was=self.service))
            self.service = service
            self._publish("service", {"open": self.open})
            self._set_staff()

    def _set_staff(self) -> None:
        view = staff_view(self._status, service=self.service)
        if view != self.staff:
            self._publish("staff", view)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            if kind == "staff":
                self.staff = data
            for viewer in self._viewers:
                viewer.offer((kind, data))

    # -- the page -----------------------------------------------------------------------
    def page(self) -> bytes:
        """page.html with its own texts filled in, in the kiosk's language."""
        text = resources.files("reader.kiosk").joinpath("page.html").read_text("utf-8")
        for key, value in page_texts().items():
            text = text.replace("{{" + key + "}}", html.escape(value))
        return text.encode()

    def stream(self, write: Callable[[str, dict[str, Any]], None]) -> None:
        """One page's event stream, until the kiosk stops or the viewer falls behind."""
        viewer = _Viewer()
        with self._lock:
            if len(self._viewers) >= MAX_VIEWERS:
                self._viewers.pop(0).gone.set()
            self._viewers.append(viewer)
            first: list[tuple[str, dict[str, Any]]] = [
                ("config", {"hold_s": self.hold_s}), ("service", {"open": self.open}),
                     ("staff", self.staff)]
        try:
            for kind, data in first:
                write(kind, data)
            while not (self._stop.is_set() or viewer.gone.is_set()):
                try:
                    kind, data = viewer.inbox.get(timeout=0.5)
                except Empty:
                    continue
                write(kind, data)
        finally:
            with self._lock:
                if viewer in self._viewers:
                    self._viewers.remove(viewer)

    def health(self) -> dict[str, Any]:
        """For technicians and tests: `curl http://127.0.0.1:8765/health`."""
        with self._lock:
            viewers = len(self._viewers)
        return {"service": self.service, "open": self.open, "viewers": viewers,
                "dropped_datagrams": dict(self.feed.dropped),
                "misdirected_requests": self.dropped_requests,
                "refused_connections": self.http.refused}


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            status = json.loads(f.read(STATUS_MAX_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    return dict(status) if isinstance(status, dict) else None
