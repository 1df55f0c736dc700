"""A damaged or lost queue file, through the real daemon, a real broker and a real city
receiver (issue 13, item 2): every tap still readable in the file reaches the city with
its own id and seq, no seq is ever used twice, and the alarm is in the MQTT status, in
`sukumo-reader status` and in doctor.

Each case: the city stores 3 taps (seq 1-3, acked); then, with no receiver subscribed,
20 more are recorded and wait in the queue (seq 4-23); the daemon stops; the file is
damaged as an SD card or a person would; the receiver and the daemon start again.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import mqtt_env
import pytest
from daemon_env import DaemonProc, Deployment, run_cli, wait_for
from mqtt_env import ReceiverProc, mqtt_section, receiver_query, retained_status

from reader.devtools.broker import DevBroker
from reader.wire.topics import Topics

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]
broker = mqtt_env.broker  # fixture
TID = "t-damage-0001"
PAGE = 4096
ACKED, WAITING = 3, 20


@pytest.fixture
def dep(tmp_path: Path, broker: DevBroker) -> Deployment:
    dep = Deployment(tmp_path / "terminal", tid=TID)
    dep.write_config(mqtt_section(broker, TID, ack_timeout_s=2.0))
    return dep


def city_rows(db: Path) -> list[tuple[str, int]]:
    return receiver_query(db, "SELECT id::text, seq FROM city.events ORDER BY seq")


def checkpointed(database: Path) -> bytes:
    """The file as it rests after the daemon stopped: every commit in the main file."""
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return database.read_bytes()


def emptied(database: Path, data: bytes) -> None:
    database.write_bytes(b"")


def deleted(database: Path, data: bytes) -> None:
    database.unlink()


def truncated(database: Path, data: bytes) -> None:
    # Cut through the pages that hold the events' rows, as a write cut off by power loss.
    pages, at = set(), data.find(b'{"id":"')
    while at >= 0:
        pages.add(at // PAGE)
        at = data.find(b'{"id":"', at + 1)
    ordered = sorted(pages)
    database.write_bytes(data[:ordered[len(ordered) // 2] * PAGE])


def header_damaged(database: Path, data: bytes) -> None:
    database.write_bytes(b"\xa5" * 100 + data[100:])  # a torn write over the header


def index_damaged(database: Path, data: bytes) -> None:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        roots = [r for (r,) in conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events'")]
    finally:
        conn.close()
    broken = bytearray(data)
    for root in roots:  # each index of a 23-event queue is its root page alone
        broken[(root - 1) * PAGE:root * PAGE] = b"\x00" * PAGE  # erased flash blocks
    database.write_bytes(bytes(broken))


Damage = Callable[[Path, bytes], None]


@pytest.fixture
def receivers(broker: DevBroker, tmp_path: Path) -> Iterator[list[ReceiverProc]]:
    procs: list[ReceiverProc] = []
    yield procs
    for proc in procs:
        proc.stop()


@pytest.mark.parametrize("damage", [emptied, deleted, truncated, header_damaged,
                                    index_damaged], ids=lambda d: d.__name__)
def test_damaged_queue_file_salvages_every_readable_tap_and_never_reuses_a_seq(
        broker: DevBroker, dep: Deployment, tmp_path: Path,
        receivers: list[ReceiverProc], damage: Damage) -> None:
    city_db = tmp_path / "city.sqlite3"
    cards = [dep.issuer.issue_card(f"M{n:08d}", os.urandom(8)) for n in range(ACKED + WAITING)]
    receivers.append(ReceiverProc(broker, city_db, tmp_path, name="r1"))
    daemon = DaemonProc(dep).wait_ready()
    try:
        for card in cards[:ACKED]:
            daemon.feed(card)
        daemon.wait_taps(ACKED)
        wait_for(lambda: len(city_rows(city_db)) == ACKED, 30, "the first taps stored")
        wait_for(lambda: len(dep.events()) == 0, 30, "the first taps acked")
        receivers.pop().stop()  # the city is away: what follows waits in the queue
        for card in cards[ACKED:]:
            daemon.feed(card)
        taps = daemon.wait_taps(ACKED + WAITING)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    waiting = {t["id"]: t["seq"] for t in taps[ACKED:]}
    assert sorted(waiting.values()) == list(range(ACKED + 1, ACKED + WAITING + 1))
    data = checkpointed(dep.database)
    damage(dep.database, data)
    # What a careful reader of the damaged bytes could still find: a row is whole in one
    # page, so its body (not just its id, which an index holds too) is in the file
    # exactly when its row survived.
    left = dep.database.read_bytes() if dep.database.exists() else b""
    readable = {i for i in waiting if f'{{"id":"{i}"'.encode() in left}
    if damage in (header_damaged, index_damaged):
        assert readable == set(waiting)  # every row intact: every tap is owed
    if damage is truncated:
        assert 0 < len(readable) < len(waiting)

    receivers.append(ReceiverProc(broker, city_db, tmp_path, name="r2"))
    daemon = DaemonProc(dep).wait_ready()
    try:
        wait_for(lambda: readable <= {i for i, _ in city_rows(city_db)}, 60,
                 "every salvageable tap stored by the city")
        daemon.feed(cards[0])
        [after] = daemon.wait_taps(1)
        assert after["seq"] == ACKED + WAITING + 1  # above every seq ever used
        wait_for(lambda: after["id"] in {i for i, _ in city_rows(city_db)}, 30,
                 "the new tap stored")
        rows = city_rows(city_db)
        seqs = [seq for _, seq in rows]
        assert len(seqs) == len(set(seqs))  # never two events under one seq
        stored = dict(rows)
        assert all(stored[i] == seq for i, seq in waiting.items() if i in stored)

        # The alarm: in the MQTT status the city reads, in `status`, in doctor.
        topic = Topics("sukumo/v1", dep.issuer.muni, TID).status
        status = wait_for(lambda: (s := retained_status(broker, topic)).get("alarms") and s,
                          15, "alarms in the MQTT status")
        [alarm] = status["alarms"]
        assert f"seq continues after {ACKED + WAITING}" in alarm
        if damage is deleted:
            assert "missing" in alarm
        else:
            assert "corrupt" in alarm and f"{len(readable)} event(s) salvaged" in alarm
        shown = run_cli("--config", str(dep.config), "status")
        assert f"ALARM     {alarm}" in shown.stdout
        doctor = run_cli("--config", str(dep.config), "doctor", "--json", timeout=60)
        [queue_check] = [c for c in json.loads(doctor.stdout)["checks"]
                         if c["name"] == "queue"]
        assert not queue_check["ok"] and alarm in queue_check["detail"]
    finally:
        daemon.kill()
