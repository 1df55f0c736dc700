"""Processes dying: an instance of `sukumo-city run` in a shared group, the terminal's
sync process itself. Every event ends stored exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import mqtt_env
import pytest
from mqtt_env import (
    ReceiverProc,
    SyncProc,
    append_events,
    assert_stored_once,
    receiver_db_ids,
    receiver_query,
    retained_status,
    terminal_settings,
    wait_for,
)

from reader.devtools.broker import DevBroker

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixtures
receivers = mqtt_env.receivers


def _stored_by(city_db: Path) -> dict[str, int]:
    return dict(receiver_query(city_db, "SELECT receiver, count(*) FROM city.events GROUP BY 1"))


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
