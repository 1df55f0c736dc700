"""The pure parts of the city sync: topics (§1), payloads (§2-§4), window, backoff, URL rules."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mqtt_env import make_event

from reader.config import Settings
from reader.errors import ConfigError, SyncError
from reader.sync import CitySync
from reader.sync.backoff import Backoff
from reader.sync.endpoint import parse_endpoint
from reader.sync.window import SendWindow
from reader.wire.event import Event
from reader.wire.messages import (
    build_ack,
    build_batch,
    event_error,
    parse_ack,
    parse_batch,
)
from reader.wire.status import QueueSummary, SyncStatus, TerminalStatus, offline_payload
from reader.wire.topics import Topics, events_filter, split_terminal_topic

T = Topics("sukumo/v1", "392081", "t-0001")


def test_topic_table_is_mqtt_v1_section_1() -> None:
    assert T.events == "sukumo/v1/392081/t-0001/events"
    assert T.acks == "sukumo/v1/392081/t-0001/acks"
    assert T.status == "sukumo/v1/392081/t-0001/status"
    assert T.config == "sukumo/v1/392081/t-0001/config"
    assert T.trust == "sukumo/v1/392081/trust"
    assert T.denylist == "sukumo/v1/392081/denylist"
    # trust first: the other bundles are verified with keys it carries
    assert T.subscriptions()[0] == T.trust
    assert set(T.subscriptions()) == {T.trust, T.denylist, T.config, T.acks, T.cert}
    assert [T.bundle_kind(t) for t in (T.trust, T.denylist, T.config, T.acks)] == [
        "trust", "denylist", "config", None]
    assert Topics("sukumo/v1", "392081", "t-0002").bundle_kind(T.config) is None
    assert events_filter("sukumo/v1", "city") == "$share/city/sukumo/v1/+/+/events"
    assert split_terminal_topic(T.events, "sukumo/v1") == ("392081", "t-0001", "events")
    assert split_terminal_topic("sukumo/v1/392081/trust", "sukumo/v1") is None


def test_batch_round_trip_and_event_checks() -> None:
    stored = [make_event(i).with_seq(i + 1) for i in range(3)]
    payload = build_batch("t-0001", "b-1", [e.dumps() for e in stored])
    events = [e.to_json() for e in stored]
    assert list(events[0]) == ["id", "seq", "at", "at_ms", "clock", "mode", "facility",
                               "result", "reason", "card", "proof", "detail"]
    assert json.loads(payload) == {"v": 1, "tid": "t-0001", "batch": "b-1", "events": events}
    assert [Event.from_json(e) for e in json.loads(payload)["events"]] == stored
    batch = parse_batch(payload)
    assert (batch.tid, batch.batch, batch.events) == ("t-0001", "b-1", events)
    assert all(event_error(e) is None for e in events)
    bad = [{**events[0], "seq": 0}, {**events[0], "id": "x"}, {**events[0], "mode": "bus"},
           {k: v for k, v in events[0].items() if k != "card"}, "not an object"]
    assert [event_error(e) for e in bad] == ["schema"] * 5
    for broken in (b"", b"[]", b'{"v":2,"tid":"t","batch":"b","events":[{}]}',
                   b'{"v":1,"tid":"t","batch":"b","events":[]}'):
        with pytest.raises(SyncError):
            parse_batch(broken)


def test_ack_round_trip() -> None:
    ack = parse_ack(build_ack("b-1", ["e1", "e2"], [("e3", "schema")]))
    assert (ack.batch, ack.ids, ack.rejected) == ("b-1", ("e1", "e2"), (("e3", "schema"),))
    # `rejected` may be left out by a city implementation
    assert parse_ack(b'{"v":1,"batch":"b","ids":["e"]}').ids == ("e",)


@pytest.mark.parametrize("payload", [
    b"", b"\xff\xfe", b"null", b"[1]", b'{"v":2,"batch":"b","ids":["e"]}',
    b'{"v":1,"ids":["e"]}', b'{"v":1,"batch":"b","ids":"e"}', b'{"v":1,"batch":"b","ids":[1]}',
    b'{"v":1,"batch":"b","ids":[],"rejected":[{"id":"e"}]}', b'{"v":1,"batch":"b","ids":[]}',
    # JSON true and 1.0 equal 1 in Python, but the version is the integer 1 (issue 22)
    b'{"v":true,"batch":"b","ids":["e"]}', b'{"v":1.0,"batch":"b","ids":["e"]}',
    # nested 100,000 deep: json.loads recurses per level (issue 22: a traceback before)
    b'{"v":1,"batch":"b","ids":["e"],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
])
def test_malformed_acks_are_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(SyncError, match="ack"):
        parse_ack(payload)


@pytest.mark.parametrize("v", [b"true", b"1.0"])
def test_a_batch_version_is_the_integer_1(v: bytes) -> None:
    batch = build_batch("t-0001", "b-1", [make_event().dumps()])
    assert parse_batch(batch).batch == "b-1"
    with pytest.raises(SyncError, match="version"):
        parse_batch(batch.replace(b'"v":1', b'"v":' + v, 1))


def test_status_and_will_are_section_4() -> None:
    queue = QueueSummary(pending=4, in_flight=0, rejected=0,
                         oldest_at="2026-01-01T00:00:00.000Z", last_seq=4, db_bytes=0,
                         over_warn=False, alarms=())
    terminal = TerminalStatus(
        tid="t-0001", mode="checkin", facility="f", reader="ok", audio="ok", queue=queue,
        sync=SyncStatus("online"), app_version="0.1.0",
        bundle_versions={"trust": 3, "denylist": 41, "config": 7}, rejected_bundles=2,
        pid=1, started_at_ms=0, updated_at_ms=1_767_225_600_000)
    status = json.loads(terminal.mqtt_payload())
    assert set(status) == {"v", "tid", "state", "at", "queue", "last_ack_at", "reader",
                           "versions", "rejected_bundles", "alarms", "link"}  # additions
    assert status["alarms"] == [] and status["link"] == {"mqtt": None, "problems": []}
    assert status["state"] == "online" and status["queue"]["pending"] == 4
    assert status["at"].endswith("Z") and len(status["at"]) == len("2026-01-01T00:00:00.000Z")
    assert status["versions"] == {"app": "0.1.0", "trust": 3, "denylist": 41, "config": 7}
    assert json.loads(offline_payload("t-0001")) == {"v": 1, "tid": "t-0001", "state": "offline"}


def test_window_bounds_unpubacked_and_unacked_batches() -> None:
    w = SendWindow(max_unpubacked=2, max_unacked=3, ack_timeout_s=10)
    w.sent(1, "a", now=0)
    w.sent(2, "b", now=0)
    assert not w.can_send()  # two batches in paho's memory
    assert w.puback(1) and not w.puback(99)  # 99: a status message, not ours
    w.sent(3, "c", now=1)
    assert not w.can_send()  # three batches wait for the city's ack
    assert w.acked("a", now=2) and not w.acked("a", now=2)
    assert w.expire(now=10.5) == ["b"]  # its events are due again in the queue
    assert w.unacked == 1


def test_the_ack_wait_adapts_to_late_acks_as_tcps_rto_does() -> None:
    w = SendWindow(ack_timeout_s=30)
    assert w.rto == 30  # before any ack: the setting
    w.sent(1, "a", now=0)
    assert w.expire(now=30) == ["a"] and w.rto == 60  # RFC 6298 5.5: back off
    w.sent(2, "b", now=31)
    assert w.expire(now=66) == []  # sent at 31, acked at 66: within the backed-off wait
    assert not w.acked("a", now=35)  # the late ack of an expired batch is still a sample
    assert w.acked("b", now=66)
    assert 35 < w.rto <= 300  # SRTT + 4 RTTVAR, at most 10x the setting
    for n in range(40):  # steady 35 s acks: the wait settles just above them
        w.sent(10 + n, f"c{n}", now=100 + n)
        assert w.expire(now=135 + n) == []
        assert w.acked(f"c{n}", now=135 + n)
    assert 35 < w.rto < 37
    for n in range(40):  # fast acks again: back to the setting, never below it
        w.sent(100 + n, f"d{n}", now=200 + n)
        w.acked(f"d{n}", now=200.1 + n)
    assert w.rto == 30


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(1.0, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for n, d in enumerate(delays):
        step = min(8.0, 2.0 ** n)
        assert step / 2 <= d <= step
    b.reset()
    assert b.next_delay() <= 1.0
    # a fleet restarted together does not retry in lockstep
    fleet = {round(Backoff(1.0, 120.0).next_delay(), 3) for _ in range(50)}
    assert len(fleet) > 40


def _mqtt(url: str, tmp_path: Path, **kw: object) -> Settings:
    return Settings(mqtt={"url": url, **kw}, paths={"state_dir": tmp_path})


def test_url_rules(tmp_path: Path) -> None:
    assert parse_endpoint(_mqtt("mqtt://127.0.0.1:1884", tmp_path).mqtt).port == 1884
    assert parse_endpoint(_mqtt("mqtt://localhost", tmp_path).mqtt).port == 1883
    with pytest.raises(ConfigError, match="allow_insecure"):
        parse_endpoint(_mqtt("mqtt://city.example.jp", tmp_path).mqtt)
    assert not parse_endpoint(
        _mqtt("mqtt://city.example.jp", tmp_path, allow_insecure=True).mqtt).tls
    with pytest.raises(ConfigError, match="ca_file"):
        parse_endpoint(_mqtt("mqtts://city.example.jp", tmp_path).mqtt)
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        parse_endpoint(_mqtt("https://city.example.jp", tmp_path).mqtt)


def test_no_broker_means_offline(tmp_path: Path) -> None:
    sync = CitySync(Settings(paths={"state_dir": tmp_path}), trust=None)  # type: ignore[arg-type]
    sync.start()
    assert sync.state == "offline" and sync._thread is None
    sync.wake()
    sync.stop()
    assert sync.state == "offline"


def test_packet_limits_follow_the_broker_and_learn_from_a_size_disconnect() -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from reader.sync.limits import PacketLimits, publish_bytes

    topic = "sukumo/v1/392081/t-0001/events"
    limits = PacketLimits(configured=131072)  # e.g. AWS IoT Core's, for a 3.1.1 broker
    assert limits.limit == 131072 and not limits.problem
    connack = Properties(PacketTypes.CONNACK)
    connack.MaximumPacketSize = 4096
    limits.connected(connack)
    assert limits.limit == 4096
    room = limits.room(topic, v5=True)
    assert publish_bytes(topic, room, v5=True) <= 4096 < publish_bytes(topic, room + 4, True)

    # MQTT 5: DISCONNECT 0x95 while a 4000-byte batch waits for its PUBACK
    limits.sent(7, 4000)
    assert limits.link_lost(0x95) and limits.problem
    assert limits.refused_size == 4000 and limits.limit == 2000

    # MQTT 3.1.1 gives no reason: twice in a row a batch larger than any taken on the link
    limits = PacketLimits()
    for attempt in (1, 2):
        limits.connected(None)
        limits.sent(1, 600)  # the status, taken
        limits.puback(1)
        limits.sent(2, 200_000)
        assert limits.link_lost(None) == (attempt == 2)
    assert limits.problem and limits.limit == 100_000
    # ...but a link that took batches as large and then dropped is the network's problem
    limits = PacketLimits()
    for _ in range(3):
        limits.connected(None)
        limits.sent(1, 100_000)
        limits.puback(1)
        limits.sent(2, 100_000)
        assert not limits.link_lost(None)
    assert not limits.problem
