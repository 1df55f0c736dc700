"""sd_notify from the real daemon (issues 7 and 13): READY=1, then WATCHDOG=1 while the
tap loop turns, silence when the loop is wedged, so systemd's WatchdogSec restarts it —
and a card that stalls is no wedge: the tap ends at the tap deadline and the pings go on.

The test plays systemd's part: it binds an AF_UNIX datagram socket and hands its path to
`sukumo-reader run` in NOTIFY_SOCKET, exactly as systemd does for Type=notify. The loop
is wedged by its own database: another process holds the write lock, so the tap's commit
waits (as on an SD card that stopped answering). Cards that stall — silent mid-tap, a
45 s on-card signature — come through the virtual reader's feed and, on the real PC/SC
stack, through pcscd + vpcd.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
from daemon_env import DaemonProc, Deployment, wait_for
from pcsc_env import VPCD_READER, Pcscd, pcscd, wait_until_field_empty  # noqa: F401

from reader.emulator.card import CardFaults, VirtualCard
from reader.emulator.vpcd import VpcdCard

pytestmark = pytest.mark.timeout(60)

SILENCE_S = 4.0  # what the test demands of a wedged loop: several polls' worth of nothing
DEADLINE_S = 1.5  # [reader] tap_deadline_s of these deployments


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

        # Wedge the loop in its commit: another writer holds the database. The pings stop.
        holder = sqlite3.connect(dep.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            daemon.feed(dep.issuer.issue_card("M00000002", os.urandom(8)))
            fed_at = time.monotonic()
            # The loop picks the card up within one poll; allow a ping or two before it does.
            wedged_at = fed_at + 1.0
            time.sleep(1.0 + SILENCE_S)
            assert daemon.proc.poll() is None  # alive: silent because wedged, not dead
            assert listener.times_of("WATCHDOG=1", since=wedged_at) == []
            assert len(daemon.logged("tap recorded")) == 1
            assert "STOPPING=1" not in "".join(m for _, m in listener.messages)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        daemon.kill()  # systemd would, after WatchdogSec


def _largest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without a ping."""
    points = [start, *[t for t in times if start < t < end], end]
    return max(b - a for a, b in pairwise(points))


def _stalled_tap_then_a_good_one(daemon: DaemonProc, listener: NotifyListener,
                                 put: Callable[[VirtualCard], object],
                                 lift: Callable[[], object], stalled: VirtualCard,
                                 good: VirtualCard, lie_s: float) -> None:
    """`stalled` goes on the reader and lies there `lie_s` s: one card_error tap within
    the deadline, pings all along, no second tap; then `good` is read normally."""
    daemon.wait_ready()
    wait_for(lambda: listener.times_of("WATCHDOG=1"), 30, "the first WATCHDOG=1")
    put(stalled)
    placed = time.monotonic()
    [tap] = daemon.wait_taps(1, timeout=DEADLINE_S + 5)
    recorded = time.monotonic()
    assert tap["reason"] == "card_error" and tap["result"] == "rejected"
    # Picked up within a poll or two (pcscd polls vpcd every 400 ms), then the deadline.
    assert recorded - placed < DEADLINE_S + 1.5, f"tap recorded after {recorded - placed:.2f} s"
    [passed] = daemon.logged("tap deadline passed")
    assert passed["deadline_s"] == DEADLINE_S
    time.sleep(max(0.0, placed + lie_s - time.monotonic()))
    lying = time.monotonic()
    gap = _largest_gap(listener.times_of("WATCHDOG=1"), placed, lying)
    assert gap < DEADLINE_S + 0.5, f"no WATCHDOG=1 for {gap:.2f} s during the stalled tap"
    assert len(daemon.logged("tap recorded")) == 1, "a card lying on the reader counted again"
    lift()
    put(good)
    [_, second] = daemon.wait_taps(2, timeout=10)
    assert second["result"] == "accepted", second
    assert listener.times_of("WATCHDOG=1", since=time.monotonic() - 1.0)


@pytest.mark.parametrize("faults", [CardFaults(silent_after=2), CardFaults(sign_delay_s=45.0)],
                         ids=["silent-mid-tap", "slow-signature"])
def test_a_stalled_card_on_the_virtual_reader_ends_at_the_deadline_and_pings_go_on(
        tmp_path: Path, listener: NotifyListener, faults: CardFaults) -> None:
    dep = Deployment(tmp_path)
    dep.write_config(reader_extra=f"tap_deadline_s = {DEADLINE_S}")
    daemon = DaemonProc(dep, env={"NOTIFY_SOCKET": str(listener.path)})
    stalled = dep.issuer.issue_card("M00000003", os.urandom(8), faults=faults)
    stalled.hold_s = 5.0  # a feed card lies on the reader this long, then lifts itself
    try:
        _stalled_tap_then_a_good_one(
            daemon, listener, daemon.feed, lambda: wait_for(
                lambda: not list(dep.feed.glob("*.card")), 10, "the stalled card to lift"),
            stalled, dep.issuer.issue_card("M00000004", os.urandom(8)), lie_s=4.0)
    finally:
        daemon.kill()


@pytest.mark.pcsc
def test_a_card_falling_silent_over_pcscd_ends_at_the_deadline_and_pings_go_on(
        tmp_path: Path, listener: NotifyListener, pcscd: Pcscd) -> None:  # noqa: F811
    dep = Deployment(tmp_path)
    dep.write_config(reader_extra=f"tap_deadline_s = {DEADLINE_S}")
    slot = VpcdCard(pcscd.port)
    daemon = DaemonProc(dep, env={"NOTIFY_SOCKET": str(listener.path),
                                  "SUKUMO_READER_READER__TRANSPORT": "pcsc",
                                  "SUKUMO_READER_READER__PCSC_READER": VPCD_READER})
    try:
        def lift() -> None:
            slot.lift()
            wait_until_field_empty()

        # Answers SELECT and one READ BINARY, then nothing while it lies on the reader:
        # the daemon's SCardTransmit never returns until the card is lifted.
        _stalled_tap_then_a_good_one(
            daemon, listener, slot.tap, lift,
            dep.issuer.issue_card("M00000005", os.urandom(8),
                                  faults=CardFaults(silent_after=2)),
            dep.issuer.issue_card("M00000006", os.urandom(8)), lie_s=4.0)
        # The given-up transmit came back once the card left; its card was reset and its
        # context dropped by the thread that made the call, not by the tap loop.
        assert daemon.logged("given-up card call returned; card reset, context dropped")
    finally:
        daemon.kill()
        slot.lift()


@pytest.mark.nfcpy
def test_a_card_asking_for_time_forever_over_nfcpy_ends_at_the_deadline_and_pings_go_on(
        tmp_path: Path, listener: NotifyListener) -> None:
    pytest.importorskip("nfc", reason="nfcpy is not installed")
    from reader.emulator.nfc_udp import Type4BPeer

    dep = Deployment(tmp_path)
    dep.write_config(reader_extra=f"tap_deadline_s = {DEADLINE_S}")
    peer = Type4BPeer()
    daemon = DaemonProc(dep, env={"NOTIFY_SOCKET": str(listener.path),
                                  "SUKUMO_READER_READER__TRANSPORT": "nfcpy",
                                  "SUKUMO_READER_READER__NFC_PATH": peer.path})
    try:
        # A 45 s on-card signature: the card keeps sending S(WTX), nfcpy keeps waiting.
        _stalled_tap_then_a_good_one(
            daemon, listener, peer.tap, peer.lift,
            dep.issuer.issue_card("M00000007", os.urandom(8),
                                  faults=CardFaults(sign_delay_s=45.0)),
            dep.issuer.issue_card("M00000008", os.urandom(8)), lie_s=4.0)
    finally:
        daemon.kill()
        peer.close()
