"""Issue 12, failure 3: a stolen SD card must not list who came when.

The real daemon (`sukumo-reader run` in a process), a real mosquitto with TLS and the
§6 ACL, and the city service (`sukumo-city run`) storing and acking every batch. 500
members tap 1,000 times: once each at a check-in terminal, then once each after the terminal was
switched to coupons. Once the city has acked every event, the state directory (queue
database, its WAL and -shm, status.json, bundles) and everything the daemon logged are
scanned byte for byte for every member id and every card serial, in every form the
terminal ever wrote one: 0 hits. Mode state is there, keyed by pseudonym, and rows past
their mode's need are pruned.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mqtt_env
import pytest
from daemon_env import DaemonProc, Deployment, wait_for
from mqtt_env import ReceiverProc, mqtt_section, receiver_db_ids

from reader.devtools.broker import DevBroker
from reader.emulator.card import VirtualCard

pytestmark = [pytest.mark.mqtt, pytest.mark.slow, pytest.mark.timeout(600)]
broker = mqtt_env.broker  # fixture
MEMBERS = 500
TID = "t-0001"
COUPONS = """
[[modes.coupon.kinds]]
code = "onsen"
rule = "senior"
limit = 4
period = "month"
"""


def _config(dep: Deployment, broker: DevBroker, mode: str, extra: str = "") -> None:
    dep.write_config(mqtt_section(broker, TID) + extra)
    text = dep.config.read_text().replace('facility = "test-hall"',
                                          f'facility = "test-hall"\nmode = "{mode}"')
    dep.config.write_text(text)


def _needles(members: list[tuple[str, bytes]]) -> list[bytes]:
    out: list[bytes] = []
    for mid, sn in members:
        out += [mid.encode(), sn, sn.hex().encode(), sn.hex().upper().encode(),
                base64.urlsafe_b64encode(sn).rstrip(b"=")]
    return out


def _hits(blobs: dict[str, bytes], needles: list[bytes]) -> list[tuple[str, bytes]]:
    return [(name, n) for name, blob in blobs.items() for n in needles if n in blob]


def _no_hits_within(state: Path, needles: list[bytes], timeout: float = 30.0) -> None:
    """Nothing in clear within the daemon's prune interval (10 s): a reader elsewhere (the
    background integrity check) may hold the WAL checkpoint back until the next prune."""
    try:
        wait_for(lambda: not _hits(_state_bytes(state), needles), timeout, "no clear ids")
    except AssertionError:
        assert _hits(_state_bytes(state), needles) == []


def _state_bytes(state: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}


@pytest.fixture
def receiver(broker: DevBroker, tmp_path: Path) -> Iterator[Path]:
    city_db = tmp_path / "city.sqlite3"
    proc = ReceiverProc(broker, city_db, tmp_path)
    yield city_db
    proc.stop()


def _run_phase(dep: Deployment, cards: list[VirtualCard], city_db: Path,
               total: int) -> DaemonProc:
    daemon = DaemonProc(dep).wait_ready()
    try:
        for card in cards:
            daemon.feed(card)
        daemon.wait_taps(len(cards), timeout=240)
        wait_for(lambda: len(receiver_db_ids(city_db)) >= total, 120, "the city stored all")
        wait_for(lambda: not dep.events(), 60, "every event acked")
    except BaseException:
        daemon.kill()  # a failed phase leaves no daemon behind
        raise
    return daemon


def test_no_member_id_or_serial_at_rest_once_the_city_has_acked(
        broker: DevBroker, receiver: Path, tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "terminal", tid=TID)
    members = [(f"M{n:08d}", os.urandom(8)) for n in range(MEMBERS)]
    cards = [dep.issuer.issue_card(mid, sn, attr={"senior": True}) for mid, sn in members]
    needles = _needles(members)
    logs: list[bytes] = []

    _config(dep, broker, "checkin")
    daemon = _run_phase(dep, cards, receiver, MEMBERS)
    try:
        # Still running, the city has everything: nothing in clear in the files right now.
        _no_hits_within(dep.state, needles)
    finally:
        assert daemon.terminate() == 0  # never left running by a failed check
    logs += [daemon.stdout.read_bytes(), daemon.stderr.read_bytes()]

    _config(dep, broker, "coupon", COUPONS)
    daemon = _run_phase(dep, cards, receiver, 2 * MEMBERS)
    try:
        conn = sqlite3.connect(f"file:{dep.database}?mode=ro", uri=True)
        try:
            used = conn.execute("SELECT mid, used FROM mode_coupon_uses").fetchall()
        finally:
            conn.close()
        # The coupon counts are kept (they are needed this month), by pseudonym only.
        assert len(used) == MEMBERS and all(n == 1 and m.startswith("p-") for m, n in used)
        _no_hits_within(dep.state, needles)
    finally:
        assert daemon.terminate() == 0
    logs += [daemon.stdout.read_bytes(), daemon.stderr.read_bytes()]

    taps = [e for e in daemon.log_entries() if e.get("msg") == "tap recorded"]
    assert taps and all(str(t["mid"]).startswith("p-") for t in taps)
    files = _state_bytes(dep.state)
    assert any(name.endswith("events.sqlite3") for name in files)
    assert any(name.endswith("status.json") for name in files)
    assert _hits(files, needles) == []
    assert _hits({f"log {i}": blob for i, blob in enumerate(logs)}, needles) == []
    assert len(receiver_db_ids(receiver)) == 2 * MEMBERS  # every tap reached the city


def test_mode_state_is_pruned_to_what_the_mode_needs(tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "terminal", tid=TID)
    dep.write_config("[modes.checkin]\ndebounce_s = 1\n")
    daemon = DaemonProc(dep).wait_ready()
    try:
        for n in range(5):
            daemon.feed(dep.issuer.issue_card(f"M{n:08d}", os.urandom(8)))
        daemon.wait_taps(5)

        def rows() -> int:
            conn = sqlite3.connect(f"file:{dep.database}?mode=ro", uri=True, timeout=10)
            try:
                return int(conn.execute("SELECT COUNT(*) FROM mode_checkin_last").fetchone()[0])
            finally:
                conn.close()

        # The debounce window (1 s) has passed: the daemon forgets them on its schedule.
        wait_for(lambda: rows() == 0, 30, "check-in state pruned")
    finally:
        assert daemon.terminate() == 0


def test_an_older_database_is_migrated_to_pseudonyms(tmp_path: Path) -> None:
    """Mode state written by a release that kept member ids in clear (schema 3)."""
    from reader.queue import EventQueue
    from reader.queue.pseudonym import Pseudonyms
    from reader.queue.schema import MIGRATIONS

    db = tmp_path / "events.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statements in MIGRATIONS[:3]:
        for sql in statements:
            conn.execute(sql)
    conn.execute("PRAGMA user_version = 3")
    mids = [f"M{n:08d}" for n in range(50)]
    conn.executemany("INSERT INTO mode_coupon_uses VALUES (?, 'taxi', '2026-12', 2, 1)",
                     [(m,) for m in mids])
    conn.executemany("INSERT INTO mode_checkin_last VALUES (?, 1)", [(m,) for m in mids])
    conn.close()
    pseudonyms = Pseudonyms.load_or_create(tmp_path / "pseudonym.key")
    with EventQueue.open(db, pseudonyms=pseudonyms) as queue:
        assert queue.mode_state.coupon_used(mids[7], "taxi", "2026-12") == 2  # kept, hashed
        assert queue.mode_state.checkin_last(mids[3]) == 1
    assert _hits(_state_bytes(tmp_path), [m.encode() for m in mids]) == []
