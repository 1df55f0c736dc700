"""mqtt-v1 §6 on a real mosquitto: TLS with one client certificate per terminal (CN = tid,
`use_identity_as_username`) and the ACL that confines each terminal to its own topics."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import mqtt_env
import paho.mqtt.client as mqtt
import pytest
from daemon_env import DaemonProc, Deployment
from mqtt_env import (
    close_client,
    mqtt_section,
    publish_codes,
    raw_client,
    terminal_settings,
    wait_for,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from reader.cli import main
from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.sync import CitySync
from reader.sync.endpoint import tls_context
from reader.wire.topics import Topics

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixture

T1 = Topics("sukumo/v1", "392081", "t-0001")
T2 = Topics("sukumo/v1", "392081", "t-0002")
NOT_AUTHORIZED = 0x87


def test_terminal_may_publish_only_its_own_events_and_status(broker: DevBroker) -> None:
    seen: list[str] = []
    city = raw_client(broker, RECEIVER_CN)
    city.on_message = lambda _c, _u, m: seen.append(m.topic)
    city.subscribe([("sukumo/v1/+/+/events", 1), ("sukumo/v1/+/+/status", 1)])
    t1 = raw_client(broker, "t-0001")
    forged = [T2.events, T2.status, T1.acks, T2.acks, T1.trust, T1.denylist, T1.config,
              "sukumo/v1/999999/t-0001/events"]
    codes = publish_codes(t1, [T1.events, T1.status, *forged])
    # What mosquitto 2.0 does under MQTT 5: a PUBACK with 0x87 "Not authorized" for each
    # forged publish (the connection stays up), success for the terminal's own topics.
    assert codes[T1.events] == 0 and codes[T1.status] == 0
    assert {t: codes[t] for t in forged} == dict.fromkeys(forged, NOT_AUTHORIZED)
    wait_for(lambda: {T1.events, T1.status} <= set(seen), 5, "own messages delivered")
    time.sleep(0.5)
    assert not [t for t in seen if "t-0002" in t or "999999" in t]  # never reached the city
    assert t1.is_connected()
    assert "Denied PUBLISH from" in broker.log_file.read_text()
    close_client(t1)
    close_client(city)


def test_terminal_reads_only_its_own_acks_and_config(broker: DevBroker) -> None:
    got: list[str] = []
    t1 = raw_client(broker, "t-0001")
    t1.on_message = lambda _c, _u, m: got.append(m.topic)
    # mosquitto never refuses a SUBSCRIBE with an acl_file: it filters what it delivers.
    t1.subscribe([(T2.acks, 1), (T2.config, 1), ("sukumo/v1/+/+/events", 1),
                  (T1.acks, 1), (T1.config, 1), (T1.trust, 1), (T1.denylist, 1)])
    time.sleep(0.3)
    city = raw_client(broker, RECEIVER_CN)
    t2 = raw_client(broker, "t-0002")
    for client, topic in ((city, T2.acks), (city, T2.config), (t2, T2.events),
                          (city, T1.acks), (city, T1.config), (city, T1.trust),
                          (city, T1.denylist)):
        client.publish(topic, b"x", qos=1).wait_for_publish(5)
    wait_for(lambda: len(got) >= 4, 5, "own messages")
    time.sleep(0.5)
    assert sorted(got) == sorted([T1.acks, T1.config, T1.trust, T1.denylist])
    for client in (t1, t2, city):
        close_client(client)


def _gets_connack(broker: DevBroker, ctx: ssl.SSLContext, port: int | None = None) -> bool:
    """Whether a client with this TLS context is ever accepted (CONNACK) by the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="x-1")
    client.tls_set_context(ctx)
    try:
        client.connect(broker.host, port or broker.port)
    except (ssl.SSLError, OSError):
        return False  # refused in the handshake (TLS 1.2)
    deadline = time.monotonic() + 2
    # With TLS 1.3 the client certificate is checked after the handshake: mosquitto then
    # closes the connection instead of answering CONNECT.
    while time.monotonic() < deadline and not client.is_connected():
        if client.loop(0.1) != 0:
            return False
    return client.is_connected()


def test_no_certificate_or_a_foreign_one_is_refused(broker: DevBroker, tmp_path: Path) -> None:
    no_cert = ssl.create_default_context(cafile=str(broker.ca_file))
    assert not _gets_connack(broker, no_cert)
    rogue = DevBroker(tmp_path / "rogue").ensure_pki().identity("t-0001")
    foreign = ssl.create_default_context(cafile=str(broker.ca_file))
    foreign.load_cert_chain(rogue.cert_file, rogue.key_file)
    assert not _gets_connack(broker, foreign)
    genuine = broker.identity("t-0001")
    own = ssl.create_default_context(cafile=str(broker.ca_file))
    own.load_cert_chain(genuine.cert_file, genuine.key_file)
    assert _gets_connack(broker, own)  # the same probe succeeds with the right certificate


def test_terminal_checks_the_server_against_the_city_ca(broker: DevBroker,
                                                        tmp_path: Path) -> None:
    # A broker whose server certificate is from another CA (someone else's broker on the
    # city's address): the terminal, with its genuine files, never gets online there.
    rogue = DevBroker(tmp_path / "rogue-broker").start()
    try:
        settings = terminal_settings(broker, tmp_path / "t1",
                                     url=f"mqtts://{rogue.host}:{rogue.port}")
        sync = CitySync(settings, trust=None)  # type: ignore[arg-type]
        sync.start()
        try:
            time.sleep(1.5)
            assert sync.state == "connecting"  # never online with an unknown server
        finally:
            sync.stop()
    finally:
        rogue.stop()


def test_a_certificate_cannot_take_over_another_terminals_session(broker: DevBroker) -> None:
    # The real t-0001, with the persistent session mqtt-v1 §6 asks for.
    dropped: list[int] = []
    t1 = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="t-0001")
    ident = broker.identity("t-0001")
    t1.tls_set_context(tls_context(broker.ca_file, ident.cert_file, ident.key_file))
    t1.on_disconnect = lambda *_a: dropped.append(1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 7 * 86400
    t1.connect(broker.host, broker.port, clean_start=False, properties=props)
    t1.loop_start()
    wait_for(t1.is_connected, 5, "t-0001 connected")
    for _ in range(5):
        # t-0002's certificate, claiming t-0001's client id: before, this kicked t-0001
        # off and wiped its session; now the broker makes the client id the CN.
        thief = raw_client(broker, "t-0002", client_id="t-0001")
        time.sleep(0.3)
        assert t1.is_connected() and not dropped
        close_client(thief)
    # Nor does a terminal certificate get in where the city's receivers connect.
    stolen = ssl.create_default_context(cafile=str(broker.ca_file))
    stolen.load_cert_chain(broker.identity("t-0002").cert_file,
                           broker.identity("t-0002").key_file)
    assert not _gets_connack(broker, stolen, port=broker.city_port)
    assert t1.is_connected() and not dropped
    close_client(t1)


def test_doctor_does_not_take_over_the_running_daemons_session(
        broker: DevBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dep = Deployment(tmp_path / "terminal", tid="t-0001")
    dep.write_config(mqtt_section(broker, "t-0001"))
    daemon = DaemonProc(dep).wait_ready()
    try:
        wait_for(lambda: dep.status_file_exists() and dep.status()["sync"]["state"] == "online",
                 20, "online")
        connects = dep.status()["sync"]["connects"]
        capsys.readouterr()
        main(["--config", str(dep.config), "doctor", "--user", "root", "--json"])
        checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
        assert checks["broker"]["ok"] and "not probed" in checks["broker"]["detail"]
        time.sleep(2.5)
        status = dep.status()
        assert status["sync"]["state"] == "online" and status["sync"]["connects"] == connects
    finally:
        assert daemon.terminate() == 0
