"""Only the daemon writes on the citizens' screen: the real kiosk process, Debian's headless
Chromium, and an attacker that is another local account (a real `useradd -r` user,
through setpriv with no groups and no capabilities; tests/kiosk_attacker.py).

- It cannot put a verdict on the screen: the feed socket is out of its reach, and even a
  socket left open to everyone takes nothing from a uid other than the kiosk's own.
- It cannot take the page: while the kiosk restarts, the port stays held (systemd's
  socket unit; here this test process holds it the same way); a request naming another
  host (DNS rebinding) gets 421.
- Hostile datagrams and a flood, with 20 viewers that never read, leave the screen
  working and the kiosk's memory bounded (VmRSS from /proc).
- A kiosk that loses its feed says so on the screen and exits for systemd to restart.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from chromium_env import CHROMIUM, Browser
from daemon_env import Deployment
from kiosk_env import (  # noqa: F401
    KioskProc,
    attacker,
    attacker_popen,
    get,
    held_port,
    kiosk_section,
    sock_dir,
    wait_serving,
)
from service_user import ServiceUser, unprivileged_user  # noqa: F401
from waiting import wait_for

from reader.devtools.broker import free_port
from reader.feedback import verdict_of
from reader.feedback.screen import ScreenFeed
from reader.kiosk.server import MAX_VIEWERS
from reader.wire.event import Event, Mode

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium package is not installed")
CLASS = "document.body.className"
STAFF = "document.getElementById('staff').innerText"


def _verdict(seq: int) -> object:
    event = Event(id="0193a5c6-0000-7000-8000-000000000001", at_ms=1, clock_synced=True,
                  mode=Mode.CHECKIN, facility="f", reason=None, detail={}, seq=seq)
    return verdict_of(event, int(time.time() * 1000))


class Screen:
    """A kiosk (as root, the tests' service user) with the daemon's side beating."""

    def __init__(self, tmp_path: Path, where: Path, listen: socket.socket | None = None,
                 viewers: str = "") -> None:
        dep = Deployment(tmp_path)
        self.port = listen.getsockname()[1] if listen else free_port()
        self.feed_path = where / "feed.sock"
        self.config = dep.write_config(kiosk_section(self.port, self.feed_path,
                                                     viewers=viewers))
        self.url = f"http://127.0.0.1:{self.port}/"
        self.kiosk = KioskProc(self.config, listen=listen)
        wait_serving(self.url)
        self.feed = ScreenFeed(self.feed_path)
        self.feed.state(running=True, reader_ok=True)
        self.browser = Browser(self.url, size=(800, 480))
        self.browser.wait_for(f"{CLASS} === 'idle'")

    def health(self) -> dict[str, object]:
        return dict(json.loads(get(self.url + "health")[1]))

    def shows(self, seq: int, timeout: float = 10.0) -> None:
        """A verdict from the service's own uid reaches the page."""
        def seen() -> bool:
            self.feed.state(running=True, reader_ok=True)
            self.feed.show(_verdict(seq))  # type: ignore[arg-type]
            return bool(self.browser.evaluate(
                f"window.kioskLog.some((v) => v.seq === {seq})"))
        wait_for(seen, timeout, f"verdict {seq} on the screen", step=0.3)

    def close(self) -> None:
        self.browser.close()
        self.feed.close()
        self.kiosk.stop()


def test_another_user_cannot_put_a_verdict_on_the_screen(
        tmp_path: Path, sock_dir: Path, unprivileged_user: ServiceUser) -> None:  # noqa: F811
    screen = Screen(tmp_path, sock_dir)
    try:
        assert (sock_dir.stat().st_mode & 0o777, screen.feed_path.stat().st_mode & 0o777) \
            == (0o700, 0o600)
        tried = attacker(unprivileged_user, "verdict", str(screen.feed_path))
        assert tried.stdout.strip() == "denied", tried.stdout + tried.stderr
        # An administrator's mistake opens the socket to everyone: still nothing foreign.
        sock_dir.chmod(0o755)
        screen.feed_path.chmod(0o666)
        tried = attacker(unprivileged_user, "verdict", str(screen.feed_path))
        assert tried.stdout.strip() == "sent", tried.stdout + tried.stderr
        wait_for(lambda: screen.health()["dropped_datagrams"].get("foreign_user"), 5,  # type: ignore[attr-defined]
                 "the forged verdict dropped and counted")
        screen.shows(7)  # the daemon's own verdicts still arrive
        page = screen.browser.evaluate("document.body.innerText")
        assert "FREE TAXI" not in page and "99" not in page, page
        # Only the daemon's (`shows` may repeat it until it is seen).
        assert set(screen.browser.evaluate("window.kioskLog.map((v) => v.seq)")) == {7}

        # DNS rebinding: a page of another site resolved to 127.0.0.1 gets nothing.
        tried = attacker(unprivileged_user, "get", str(screen.port), "attacker.com")
        assert tried.stdout.strip().endswith("421 Misdirected Request"), tried.stdout
        assert get(screen.url, host=f"attacker.com:{screen.port}")[0] == 421
        assert get(screen.url + "events", host="attacker.com")[0] == 421
        assert get(screen.url)[0] == 200
    finally:
        screen.close()


def test_another_user_cannot_take_the_page_while_the_kiosk_restarts(
        tmp_path: Path, sock_dir: Path, unprivileged_user: ServiceUser) -> None:  # noqa: F811
    listen = held_port()  # what sukumo-reader-kiosk.socket holds for the kiosk
    screen = Screen(tmp_path, sock_dir, listen)
    try:
        screen.kiosk.stop(kill=True)  # the kiosk crashed; systemd restarts it in 2 s
        screen.browser.wait_for(f"{CLASS} === 'closed'", timeout=5)  # the page's own word
        assert "画面のサーバー" in screen.browser.evaluate(STAFF)
        tried = attacker(unprivileged_user, "bind", str(screen.port))
        assert tried.stdout.startswith("refused"), tried.stdout + tried.stderr
        screen.kiosk = KioskProc(screen.config, listen=listen)  # systemd's restart
        screen.browser.wait_for(f"{CLASS} === 'idle'", timeout=15)  # the same page, back
        screen.shows(1)
    finally:
        screen.close()
        listen.close()


def test_with_screen_viewers_another_user_gets_no_page_and_no_stream(
        tmp_path: Path, sock_dir: Path, unprivileged_user: ServiceUser) -> None:  # noqa: F811
    # The display's browser runs as root here; the other account is refused at connect.
    screen = Screen(tmp_path, sock_dir, viewers="root")
    try:
        tried = attacker(unprivileged_user, "get", str(screen.port), f"127.0.0.1:{screen.port}")
        assert tried.stdout.strip() == "closed", tried.stdout + tried.stderr
        held = attacker_popen(unprivileged_user, "viewers", str(screen.port), "20", "3")
        assert held.stdout is not None and held.stdout.readline().strip() == "holding 0"
        health = screen.health()
        assert health["viewers"] == 1 and health["refused_connections"] >= 21, health  # type: ignore[operator]
        screen.shows(3)  # the browser's stream was never displaced
        assert held.wait(30) == 0
    finally:
        screen.close()


HOSTILE = [b"[" * 5000, b"[" * 1500, b"{" * 3 + b"}" * 3, b"\xff\xfe" * 50, b" " * 65000,
           json.dumps({"verdict": {"look": "accepted", "kind": "accepted", "at_ms": 0,
                                   "seq": [[[1]]]}}).encode(),
           b'{"beat": "ready", "verdict": null}', b"null", b""]


def test_hostile_datagrams_and_a_flood_leave_the_screen_working_and_memory_bounded(
        tmp_path: Path, sock_dir: Path, unprivileged_user: ServiceUser) -> None:  # noqa: F811
    screen = Screen(tmp_path, sock_dir)
    flooding = threading.Event()
    try:
        # From the service's own uid (a daemon gone wrong): dropped, counted, survived.
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for payload in HOSTILE:
            raw.sendto(payload, str(screen.feed_path))
        wait_for(lambda: sum(screen.health()["dropped_datagrams"].values())  # type: ignore[attr-defined]
                 >= len(HOSTILE), 5, "every hostile datagram dropped")
        dropped = screen.health()["dropped_datagrams"]
        assert {"too_large", "too_deep", "not_utf8", "not_a_verdict"} <= set(dropped), dropped  # type: ignore[arg-type]
        screen.shows(1)  # the receiving thread lives on
        time.sleep(1.0)
        before = screen.kiosk.rss_kib()

        # 20 viewers that never read, a flood from the other user (the socket opened to
        # everyone by mistake) and one of well-formed verdicts from the service's uid.
        sock_dir.chmod(0o755)
        screen.feed_path.chmod(0o666)
        viewers = attacker_popen(unprivileged_user, "viewers", str(screen.port), "20", "20")
        assert viewers.stdout is not None and viewers.stdout.readline().startswith("holding")
        flood = attacker_popen(unprivileged_user, "flood", str(screen.feed_path), "8")

        def own_flood() -> None:
            seq = 1000
            while not flooding.is_set():
                seq += 1
                try:
                    raw.sendto(json.dumps({"verdict": _verdict(seq).to_json()}).encode(),  # type: ignore[attr-defined]
                               str(screen.feed_path))
                except BlockingIOError:
                    time.sleep(0.0005)

        raw.setblocking(False)
        threading.Thread(target=own_flood, daemon=True).start()
        peak = before
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            peak = max(peak, screen.kiosk.rss_kib())
            time.sleep(0.2)
        flooding.set()
        flood_out, _ = flood.communicate(timeout=30)
        assert flood_out.startswith("sent"), flood_out
        health = screen.health()
        assert health["viewers"] <= MAX_VIEWERS, health  # type: ignore[operator]
        assert health["dropped_datagrams"]["foreign_user"] > 100, health  # type: ignore[index]
        after = screen.kiosk.rss_kib()
        print(f"kiosk VmRSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB "
              f"under the flood, {after / 1024:.1f} MiB after; {health}")
        assert peak - before < 20 * 1024, (before, peak)
        screen.shows(99_999, timeout=20)  # the screen works: the real browser gets it
        assert screen.kiosk.proc.poll() is None
        viewers.kill()
        viewers.wait(10)
    finally:
        flooding.set()
        screen.close()


def test_a_kiosk_that_loses_its_feed_says_so_and_exits(
        tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    screen = Screen(tmp_path, sock_dir)
    try:
        screen.feed_path.unlink()  # e.g. its runtime directory cleaned under it
        screen.browser.wait_for(f"{CLASS} === 'closed'", timeout=5)
        assert "接続を失いました" in screen.browser.evaluate(STAFF)
        assert screen.kiosk.proc.wait(10) == 3  # for systemd's Restart=always
        assert "kiosk feed socket gone" in screen.kiosk.text()
    finally:
        screen.close()
