"""sd_notify from the real daemon (issue 7): READY=1, then WATCHDOG=1 while the tap loop
turns, and silence when the loop is wedged, so systemd's WatchdogSec restarts it.

The test plays systemd's part: it binds an AF_UNIX datagram socket and hands its path to
`sukumo-reader run` in NOTIFY_SOCKET, exactly as systemd does for Type=notify. The loop
is wedged by a card whose every APDU takes 30 s (CardFaults.apdu_delay_s): the tap loop
sits in the card's first answer, as it would with a reader driver stuck in a USB
transfer (PC/SC has no per-APDU timeout to save it; the watchdog is the guard).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
from daemon_env import DaemonProc, Deployment, wait_for

from reader.emulator.card import CardFaults

pytestmark = pytest.mark.timeout(60)

WEDGE_S = 30.0
SILENCE_S = 4.0  # what the test demands of a wedged loop: several polls' worth of nothing


@dataclass
class NotifyListener:
    """A bound NOTIFY_SOCKET collecting (monotonic time, message) in a thread."""

    path: Path
    messages: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times_of(self, line: str, since: float = 0.0) -> list[float]:
        return [t for t, msg in list(self.messages) if line in msg.splitlines() and t >= since]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    # Not under tmp_path: an AF_UNIX path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn-") as short:
        lst = NotifyListener(Path(short) / "notify")
        yield lst
        lst.close()


def test_ready_then_watchdog_pings_which_stop_when_the_tap_loop_wedges(
        tmp_path: Path, listener: NotifyListener) -> None:
    dep = Deployment(tmp_path)
    daemon = DaemonProc(dep, env={"NOTIFY_SOCKET": str(listener.path)})
    try:
        wait_for(lambda: listener.times_of("WATCHDOG=1"), 30, "the first WATCHDOG=1")
        first = listener.messages[0][1].splitlines()
        assert first[0] == "READY=1"  # before any ping: systemd counts from READY
        assert any(line.startswith("STATUS=") for line in first)
        [ready_at] = listener.times_of("READY=1")

        # Periodic: the loop pings every turn (poll_timeout_s = 0.05 here).
        time.sleep(1.5)
        pings = listener.times_of("WATCHDOG=1", since=ready_at)
        assert len(pings) >= 5
        assert max(b - a for a, b in pairwise(pings)) < 1.0

        # A tap still pings afterwards: a normal tap does not count as wedged.
        daemon.feed(dep.issuer.issue_card("M00000001", os.urandom(8)))
        daemon.wait_taps(1)
        tapped_at = time.monotonic()
        wait_for(lambda: listener.times_of("WATCHDOG=1", since=tapped_at), 5, "pings after a tap")
        # `systemctl status` shows what the terminal is doing, the tap included.
        wait_for(lambda: [m for _, m in list(listener.messages)
                          if m.startswith("STATUS=checkin: reader ok") and "accepted" in m],
                 5, "a STATUS= line naming the reader and the last tap")

        # Wedge the loop inside a card's APDU: the pings stop.
        daemon.feed(dep.issuer.issue_card("M00000002", os.urandom(8),
                                          faults=CardFaults(apdu_delay_s=WEDGE_S)))
        fed_at = time.monotonic()
        # The loop picks the card up within one poll; allow a ping or two before it does.
        wedged_at = fed_at + 1.0
        time.sleep(1.0 + SILENCE_S)
        assert daemon.proc.poll() is None  # alive: silent because wedged, not because dead
        assert listener.times_of("WATCHDOG=1", since=wedged_at) == []
        assert list(dep.feed.glob("*.card"))  # the card is still "being read"
        assert len(daemon.logged("tap recorded")) == 1
        assert "STOPPING=1" not in "".join(m for _, m in listener.messages)
    finally:
        daemon.kill()  # systemd would, after WatchdogSec
