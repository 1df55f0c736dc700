"""A city broker that speaks only MQTT 3.1.1 (RabbitMQ's MQTT plugin, Debian 12): the
terminal falls back from 5, keeps a persistent session, delivers every tap and gets it
acked; status and doctor say which protocol is in use and doctor agrees with the daemon."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import rabbit_env
from mqtt_env import ROOT_HEX, append_events, queue_left, trust_for, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from rabbit_env import RabbitBroker

from reader.config import Settings
from reader.devtools.broker import RECEIVER_CN
from reader.sync import CitySync
from reader.sync.endpoint import tls_context
from reader.technician import doctor
from reader.technician.broker_probe import probe_broker
from reader.wire.messages import build_ack, parse_batch

pytestmark = [pytest.mark.mqtt,
              pytest.mark.skipif(not rabbit_env.available(),
                                 reason="rabbitmq-server is not installed (scripts/bootstrap.sh)")]
TID = "t-0001"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitBroker]:
    broker = RabbitBroker(tmp_path_factory.mktemp("rabbit")).start()
    yield broker
    broker.stop()


class Receiver311:
    """A city receiver over MQTT 3.1.1: stores each event id once, acks (or holds acks)."""

    def __init__(self, broker: RabbitBroker) -> None:
        self.copies: dict[str, int] = {}
        self.held: list[tuple[str, bytes]] = []
        self.hold = False
        self.status: dict[str, dict] = {}
        self._lock = threading.Lock()
        ident = broker.pki.identity(RECEIVER_CN)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="city-311",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.tls_set_context(tls_context(broker.pki.ca_file, ident.cert_file,
                                                ident.key_file))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        # A clean session forgets its subscriptions: subscribe on every (re)connect.
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("sukumo/v1/+/+/events", 1), ("sukumo/v1/+/+/status", 1)])
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(30), "receiver not subscribed"

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            self.status[msg.topic] = json.loads(msg.payload)
            return
        batch = parse_batch(msg.payload)
        ids = [e["id"] for e in batch.events]
        with self._lock:
            for i in ids:
                self.copies[i] = self.copies.get(i, 0) + 1
        ack = (msg.topic.removesuffix("/events") + "/acks", build_ack(batch.batch, ids))
        if self.hold:
            self.held.append(ack)
        else:
            client.publish(*ack, qos=1)

    def release(self) -> None:
        for topic, payload in self.held:
            self.client.publish(topic, payload, qos=1).wait_for_publish(5)
        self.held.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings_for(broker: RabbitBroker, state_dir: Path) -> Settings:
    ident = broker.pki.identity(TID)
    return Settings(
        terminal={"id": TID, "muni": broker.muni}, paths={"state_dir": state_dir},
        verify={"root_public_key": ROOT_HEX},
        mqtt={"url": broker.url, "ca_file": broker.pki.ca_file, "cert_file": ident.cert_file,
              "key_file": ident.key_file, "ack_timeout_s": 30.0, "status_interval_s": 1.0,
              "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "batch_max_events": 20})


def test_taps_delivered_and_acked_through_a_311_only_broker(
        rabbit: RabbitBroker, tmp_path: Path) -> None:
    settings = settings_for(rabbit, tmp_path / "t1")
    db = settings.paths.database
    city = Receiver311(rabbit)
    sync = CitySync(settings, trust_for(settings))
    try:
        ids = append_events(db, 60)
        sync.start()
        wait_for(lambda: queue_left(db) == 0, 30, "every tap acked over 3.1.1")
        assert set(city.copies) == set(ids) and set(city.copies.values()) == {1}
        link = sync.status()
        assert (link.state, link.protocol, link.no_receiver) == ("online", "3.1.1", False)
        status = wait_for(lambda: (s := city.status.get(sync.topics.status, {})).get(
            "queue", {}).get("pending") == 0 and s, 10, "status after the drain")
        assert status["link"] == {"mqtt": "3.1.1", "problems": []}

        # The session persists: acks published while the terminal is away reach it after
        # its restart, so the taps are not sent twice (the ack timeout is 30 s here).
        city.hold = True
        more = append_events(db, 40, start=60)
        sync.wake()
        wait_for(lambda: set(more) <= set(city.copies), 30, "the new taps at the city")
        sync.stop()
        assert queue_left(db) == 40  # in flight, unacked
        city.release()
        # Doctor, meanwhile, connects exactly as the daemon does (tid, 3.1.1, persistent
        # session) and takes nothing out of the session.
        check = doctor.check_broker(settings)
        assert check.ok and "over MQTT 3.1.1" in check.detail, check
        assert probe_broker(settings, rabbit.host, rabbit.port, True, 5.0) == (
            "Success", None, "3.1.1")
        sync = CitySync(settings, trust_for(settings))
        sync.start()
        wait_for(lambda: queue_left(db) == 0, 20, "acks from the session applied")
        assert all(city.copies[i] == 1 for i in more), "sent again: the session was lost"
    finally:
        sync.stop()
        city.close()
