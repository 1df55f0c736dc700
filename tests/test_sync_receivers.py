"""Processes dying: a receiver of a shared group, the terminal's sync process itself.
And the city side's seq gap report."""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from pathlib import Path

import mqtt_env
import pytest
from mqtt_env import (
    ReceiverProc,
    SyncProc,
    append_events,
    assert_stored_once,
    make_event,
    receiver_db_ids,
    retained_status,
    terminal_settings,
    wait_for,
)

from reader.devtools.broker import DevBroker

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixtures
receivers = mqtt_env.receivers


def _stored_by(city_db: Path) -> dict[str, int]:
    with sqlite3.connect(city_db, timeout=30) as conn:
        return dict(conn.execute("SELECT receiver, COUNT(*) FROM events GROUP BY receiver"))


def test_two_receivers_in_one_group_one_killed_mid_stream(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path, name="r1"))
    receivers.append(ReceiverProc(broker, city_db, tmp_path, name="r2"))
    settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=20, ack_timeout_s=2)
    ids = append_events(settings.paths.database, 3000)
    sync = SyncProc(settings, tmp_path / "sync.log")
    try:
        # both share the load before one dies
        wait_for(lambda: len(_stored_by(city_db)) == 2 and min(_stored_by(city_db).values())
                 >= 100, 20, "both receivers storing")
        receivers[0].kill()
        assert len(receiver_db_ids(city_db)) < 3000
        assert_stored_once(city_db, ids, settings.paths.database, timeout=40)
        assert _stored_by(city_db)["city-r2"] > _stored_by(city_db)["city-r1"]
    finally:
        sync.stop()


def test_sync_process_killed_mid_batch_and_restarted(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=20)
    ids = append_events(settings.paths.database, 3000)
    first = SyncProc(settings, tmp_path / "sync1.log")
    wait_for(lambda: len(receiver_db_ids(city_db)) >= 300, 20, "drain under way")
    first.kill()  # SIGKILL: batches in flight, acks on their way
    assert len(receiver_db_ids(city_db)) < 3000
    # the broker publishes the retained Will (§4) for the dead connection
    assert retained_status(broker, "sukumo/v1/392081/t-0001/status") == {
        "v": 1, "tid": "t-0001", "state": "offline"}
    ids += append_events(settings.paths.database, 200, start=3000)  # taps while it is down
    time.sleep(0.5)
    second = SyncProc(settings, tmp_path / "sync2.log")
    try:
        assert_stored_once(city_db, ids, settings.paths.database, timeout=40)
        log = (tmp_path / "sync2.log").read_text()
        # the broker kept the session (clean start off, expiry 7 days)
        assert '"session_present": true' in log
    finally:
        second.stop()


def test_the_receiver_reports_seq_gaps(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "city_receiver", mqtt_env.REPO / "scripts" / "city_receiver.py")
    assert spec and spec.loader
    city = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(city)
    store = city.CityStore(tmp_path / "city.sqlite3", "test")
    store.store("392081", "t-0001", [make_event(n).with_seq(n).to_json() for n in (2, 3, 6, 7, 10)])
    store.store("392081", "t-0002", [make_event(n).with_seq(n).to_json() for n in (1, 2, 3)])
    assert store.gaps() == [("t-0001", 1, 1), ("t-0001", 4, 5), ("t-0001", 8, 9)]
    assert city.main(["gaps", "--db", str(tmp_path / "city.sqlite3")]) == 1
