"""/metrics of `sukumo-city run`, scraped over HTTP as Prometheus does, with a real
terminal (`sukumo-reader sync`), a real mosquitto with TLS and the ACL and a real
PostgreSQL: the counters of this instance, the fleet gauges from the database, and each
broken link — a refused TLS connection, a lost database, a broker that does not answer —
as an error line naming the fix and a state gauge, back to normal when it is mended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mqtt_env import (
    REPO,
    ReceiverProc,
    SyncProc,
    append_events,
    broker,  # noqa: F401
    city_config,
    close_client,
    make_event,
    raw_client,
    receivers,  # noqa: F401
    terminal_settings,
)
from pg_env import cluster
from prometheus_client.parser import text_string_to_metric_families
from waiting import end_process, wait_for

from reader.devtools.broker import DevBroker, free_port
from reader.system.uuid7 import uuid7_str
from reader.wire.messages import build_batch
from reader.wire.topics import Topics

pytestmark = pytest.mark.mqtt
MUNI = "392081"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = resp.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def metric_is(port: int, name: str, want: float, **labels: str) -> bool:
    return value(scrape(port)[1], name, **labels) == want


def publish(mosquitto: DevBroker, tid: str, payloads: list[tuple[str, bytes, bool]]) -> None:
    """What a terminal sends, from its own certificate: (leaf, payload, retain)."""
    client = raw_client(mosquitto, tid)
    try:
        topics = Topics("sukumo/v1", MUNI, tid)
        for leaf, payload, retain in payloads:
            client.publish(getattr(topics, leaf), payload, qos=1,
                           retain=retain).wait_for_publish(5)
    finally:
        close_client(client)


def test_counters_and_fleet_gauges_as_prometheus_scrapes_them(
        broker: DevBroker, receivers: list[ReceiverProc], tmp_path: Path) -> None:  # noqa: F811
    city = ReceiverProc(broker, tmp_path / "city.db", tmp_path)
    receivers.append(city)
    # A real terminal sends 5 taps and its status.
    settings = terminal_settings(broker, tmp_path / "t1", "t-0001")
    append_events(settings.paths.database, 5)
    sync = SyncProc(settings, tmp_path / "sync.log")
    try:
        wait_for(lambda: metric_is(city.web_port, "sukumo_city_events_stored_total", 5,
                                   muni=MUNI), 30, "5 events stored")
        wait_for(lambda: metric_is(city.web_port, "sukumo_city_terminals", 1, muni=MUNI,
                                   state="online"), 15, "the terminal online")
    finally:
        sync.stop()
    # Another terminal re-sends one batch (no ack seen): counted, not stored twice. Its
    # status carries an alarm; then it goes away (its Will: offline).
    events = [make_event(n).with_seq(n + 1) for n in range(3)]
    batch = build_batch("t-0002", uuid7_str(), [e.dumps() for e in events])
    status = json.dumps({"v": 1, "tid": "t-0002", "state": "online", "at": events[0].at,
                         "queue": {"pending": 3, "oldest_at": events[0].at},
                         "versions": {"app": "1.0.0"}, "alarms": ["queue over 50 MB"]})
    publish(broker, "t-0002", [("events", batch, False), ("events", batch, False),
                               ("status", status.encode(), True)])
    port = city.web_port
    wait_for(lambda: metric_is(port, "sukumo_city_events_duplicate_total", 3, muni=MUNI),
             30, "the re-sent batch counted")
    wait_for(lambda: metric_is(port, "sukumo_city_terminals_with_alarms", 1, muni=MUNI),
             15, "the alarm")
    text, samples = scrape(port)
    assert value(samples, "sukumo_city_events_stored_total", muni=MUNI) == 8
    assert value(samples, "sukumo_city_acks_sent_total", muni=MUNI) >= 3  # type: ignore[operator]
    assert value(samples, "sukumo_city_intake_lag_seconds_count") >= 3  # type: ignore[operator]
    # t-0002's 3, and whatever t-0001's last status said before it stopped
    assert value(samples, "sukumo_city_terminal_events_pending", muni=MUNI) >= 3  # type: ignore[operator]
    assert value(samples, "sukumo_city_terminal_oldest_unacked_seconds", muni=MUNI) > 0  # type: ignore[operator]
    assert value(samples, "sukumo_city_broker_up") == 1
    assert value(samples, "sukumo_city_database_up") == 1
    assert value(samples, "sukumo_city_broker_state", state="connected") == 1
    assert value(samples, "sukumo_city_fleet_up") == 1
    # Low cardinality: a town, never a terminal or a member in a label.
    assert "tid=" not in text and "mid=" not in text and "t-0001" not in text
    publish(broker, "t-0002", [("status", b'{"v": 1, "tid": "t-0002", "state": "offline"}',
                                True)])
    # Both offline now: t-0001 said so when it stopped, t-0002 just now.
    wait_for(lambda: metric_is(port, "sukumo_city_terminals", 2, muni=MUNI, state="offline"),
             15, "the terminals offline")
    assert metric_is(port, "sukumo_city_terminals", 0, muni=MUNI, state="online")


class CityRun:
    """`sukumo-city run` started by hand (it may never get subscribed: faults)."""

    def __init__(self, mosquitto: DevBroker, tmp_path: Path, *, edit: dict[str, str],
                 keepalive_s: int = 30) -> None:
        self.port = free_port()
        config = city_config(mosquitto, tmp_path / "city.db", tmp_path / "city.toml",
                             web_port=self.port, keepalive_s=keepalive_s)
        text = config.read_text()
        for old, new in edit.items():
            text = text.replace(old, new)
        config.write_text(text)
        self.log = tmp_path / "city.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "city.cli", "--config", str(config), "run"],
                stdout=out, stderr=out, cwd=REPO)
        wait_for(self.serving, 20, "/metrics served")

    def serving(self) -> bool:
        try:
            scrape(self.port)
        except OSError:
            return False
        return True

    def errors(self) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()
                 if line.startswith("{")]
        return [line for line in lines if line.get("level") == "error"]

    def stop(self) -> None:
        end_process(self.proc)


def _state_with_fix(run: CityRun, link: str, state: str, fix_words: str) -> None:
    wait_for(lambda: metric_is(run.port, f"sukumo_city_{link}_state", 1, state=state), 30,
             f"{link} state {state}")
    assert metric_is(run.port, f"sukumo_city_{link}_up", 0)
    wait_for(lambda: any(e.get("state") == state for e in run.errors()), 10, "the error line")
    line = next(e for e in run.errors() if e.get("state") == state)
    assert fix_words in str(line["fix"]), line
    # Said once when it began, not once per retry (it retries every second here).
    time.sleep(3)
    assert sum(e.get("state") == state for e in run.errors()) == 1


@pytest.mark.parametrize(("case", "state", "fix_words"), [
    ("ca_file", "tls_untrusted", "set mqtt.ca_file"),
    ("cert_file", "tls_refused", "mqtt.cert_file and mqtt.key_file"),
])
def test_a_refused_tls_connection(broker: DevBroker, tmp_path: Path, case: str, state: str,  # noqa: F811
                                  fix_words: str) -> None:
    """A wrong CA for the broker (issue 19, item 6), and a client certificate the city
    listener does not accept (a terminal's, signed by the terminals' CA)."""
    ident = broker.identity("t-0001")
    wrong = {"ca_file": (str(broker.ca_file), str(broker.city_ca_file)),
             "cert_file": (str(broker.receiver.cert_file), str(ident.cert_file))}[case]
    edit = {wrong[0]: wrong[1]}
    if case == "cert_file":
        edit[str(broker.receiver.key_file)] = str(ident.key_file)
    run = CityRun(broker, tmp_path, edit=edit)
    try:
        _state_with_fix(run, "broker", state, fix_words)
    finally:
        run.stop()


def test_a_lost_database_and_its_return(broker: DevBroker, tmp_path: Path) -> None:  # noqa: F811
    run = CityRun(broker, tmp_path, edit={})
    pg = cluster()
    try:
        wait_for(lambda: metric_is(run.port, "sukumo_city_database_up", 1), 20, "database up")
        pg.stop()
        try:
            _state_with_fix(run, "database", "unreachable", "PostgreSQL runs")
            # The fleet gauges are not made up while the database is away.
            _, samples = scrape(run.port)
            assert value(samples, "sukumo_city_fleet_up") == 0
            assert value(samples, "sukumo_city_terminals", muni=MUNI, state="online") is None
        finally:
            pg.start()
        wait_for(lambda: metric_is(run.port, "sukumo_city_database_up", 1), 30,
                 "database back")
        assert metric_is(run.port, "sukumo_city_fleet_up", 1)
    finally:
        run.stop()


def test_a_broker_that_does_not_answer(broker: DevBroker, tmp_path: Path) -> None:  # noqa: F811
    run = CityRun(broker, tmp_path, edit={}, keepalive_s=5)
    pid = broker._proc.pid  # type: ignore[union-attr]  # the test's own mosquitto
    try:
        wait_for(lambda: metric_is(run.port, "sukumo_city_broker_up", 1), 20, "broker up")
        os.kill(pid, signal.SIGSTOP)  # alive, connected, silent
        try:
            _state_with_fix(run, "broker", "no_answer", "mqtt.url")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: metric_is(run.port, "sukumo_city_broker_up", 1), 30, "broker back")
        assert metric_is(run.port, "sukumo_city_broker_state", 1, state="connected")
    finally:
        run.stop()
