"""Delivery under faults, against a real mosquitto and the city service (`sukumo-city
run` on PostgreSQL): no event is lost and each is stored exactly once at the city,
whatever the broker or receiver does."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import mqtt_env
import pytest
from mqtt_env import (
    ReceiverProc,
    append_events,
    assert_stored_once,
    close_client,
    raw_client,
    receiver_db_ids,
    retained_status,
    terminal_settings,
    trust_for,
    wait_for,
)

from reader.config import Settings
from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.sync import CitySync
from reader.wire.messages import build_ack

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixtures
receivers = mqtt_env.receivers


class Terminal:
    """The terminal side in this process: settings, its queue file, a running CitySync."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.paths.database
        self.trust = trust_for(settings)
        self.sync = CitySync(settings, self.trust)

    def record(self, count: int, start: int = 0) -> list[str]:
        ids = append_events(self.db, count, start)
        self.sync.wake()  # what the tap path does after each append
        return ids


@pytest.fixture
def terminal(broker: DevBroker, tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(terminal_settings(broker, tmp_path / "t1"))
    yield term
    term.sync.stop()


def test_drains_backlog_reports_status_and_goes_offline_in_order(
        broker: DevBroker, receivers: list, terminal: Terminal, tmp_path: Path) -> None:
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    ids = terminal.record(1200)
    terminal.sync.start()
    assert_stored_once(city_db, ids, terminal.db)
    assert terminal.sync.state == "online" and terminal.sync.last_ack_at
    assert terminal.sync.counters.events_acked == 1200
    topic = terminal.sync.topics.status
    status = wait_for(lambda: (s := retained_status(broker, topic))["queue"]["pending"] == 0
                      and s, 10, "status after the drain")
    assert status["state"] == "online" and status["tid"] == "t-0001"
    assert status["versions"]["app"] and status["rejected_bundles"] == 0
    assert status["last_ack_at"].endswith("Z")
    terminal.sync.stop()
    assert retained_status(broker, topic) == {"v": 1, "tid": "t-0001", "state": "offline"}


def test_broker_sigkilled_mid_stream_and_restarted(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    term = Terminal(terminal_settings(broker, tmp_path / "t1", batch_max_events=20))
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    ids = term.record(3000)
    term.sync.start()
    try:
        wait_for(lambda: len(receiver_db_ids(city_db)) >= 200, 20, "drain under way")
        broker.kill()
        assert len(receiver_db_ids(city_db)) < 3000  # killed mid-stream indeed
        ids += term.record(300, start=3000)  # taps go on while the broker is gone
        wait_for(lambda: term.sync.state == "connecting", 5, "link loss noticed")
        time.sleep(1.0)
        broker.restart()
        assert_stored_once(city_db, ids, term.db, timeout=40)
        assert term.sync.counters.connects >= 2
    finally:
        term.sync.stop()


def test_broker_down_for_a_while_then_back_with_a_backlog(
        broker: DevBroker, receivers: list, terminal: Terminal, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="reader.sync.client")
    broker.stop()
    terminal.sync.start()
    ids = terminal.record(1500)
    time.sleep(2.5)  # several reconnect attempts, with backoff
    assert terminal.sync.state == "connecting"
    retries = [r for r in caplog.records if r.getMessage() == "broker unreachable, retrying"]
    assert len(retries) >= 2
    ids += terminal.record(500, start=1500)
    broker.start()
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    assert_stored_once(city_db, ids, terminal.db, timeout=40)


def test_receiver_that_drops_the_first_batches_gets_them_again(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    term = Terminal(terminal_settings(broker, tmp_path / "t1", batch_max_events=100,
                                      ack_timeout_s=2.0))
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path, "--drop-first", "3"))
    ids = term.record(1000)
    term.sync.start()
    try:
        copies = assert_stored_once(city_db, ids, term.db, timeout=30)
        assert set(copies.values()) == {1}  # dropped batches were never stored, then once
        assert term.sync.counters.batches_sent >= 13  # 10 batches + the 3 sent again
    finally:
        term.sync.stop()


def test_duplicate_and_malformed_acks_are_ignored_and_logged(
        broker: DevBroker, receivers: list, terminal: Terminal, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reader.sync.client")
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    ids = terminal.record(300)
    terminal.sync.start()
    assert_stored_once(city_db, ids, terminal.db)
    later = terminal.record(50, start=300)  # in the queue while the bad acks arrive
    city = raw_client(broker, RECEIVER_CN)
    acks = terminal.sync.topics.acks
    malformed = [b"", b"not json", b"[]", b'{"v":1}', b'{"v":9,"batch":"b","ids":["x"]}',
                 b'{"v":1,"batch":"b","ids":"x"}', b'{"v":1,"batch":"b","ids":[],"rejected":[1]}']
    for payload in malformed:
        city.publish(acks, payload, qos=1).wait_for_publish(5)
    # a duplicate of acks already received, and an id this terminal never had
    city.publish(acks, build_ack("b-dup", [*ids[:10], "0190b1a2-0000-7000-8000-000000000000"]),
                 qos=1).wait_for_publish(5)
    close_client(city)
    counters = terminal.sync.counters
    wait_for(lambda: counters.malformed_acks == len(malformed) and counters.unknown_ack_ids,
             10, "bad acks handled")
    assert counters.unknown_ack_ids == 11
    assert terminal.sync.state == "online"
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("malformed ack ignored") == len(malformed)
    assert "ack names events not in the queue (duplicate or unknown), ignored" in messages
    assert_stored_once(city_db, ids + later, terminal.db)  # and it keeps working
