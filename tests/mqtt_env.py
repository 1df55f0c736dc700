"""Fixtures for the sync tests: a real mosquitto (reader.devtools.broker), the reference city
receiver in a subprocess, terminal settings, events, and CitySync in a subprocess.

Nothing is mocked: TLS with per-terminal certificates, the §6 ACL, SQLite on both sides.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon_env import DaemonProc, Deployment  # noqa: E402
from spec_vectors import VECTORS_PATH  # noqa: E402
from waiting import end_process, wait_for  # noqa: E402

from reader.bundles.store import TrustStore  # noqa: E402
from reader.config import Settings  # noqa: E402
from reader.devtools.broker import RECEIVER_CN, DevBroker  # noqa: E402
from reader.queue import EventQueue  # noqa: E402
from reader.sync.endpoint import tls_context  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa
from reader.wire.event import CardRef, Event, Mode, Proof  # noqa: E402
from reader.wire.topics import Topics  # noqa: E402

VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text()) if VECTORS_PATH.exists() else {}
ROOT_HEX = VECTORS.get("root_public_hex", "")
RECEIVER = REPO / "scripts" / "city_receiver.py"


def make_event(n: int = 0) -> Event:
    """A tap event with every mqtt-v1 §2 field except seq."""
    return Event(
        id=uuid7_str(), at_ms=time.time_ns() // 1_000_000, clock_synced=True,
        mode=Mode.CHECKIN, facility="sukumo-library", reason=None,
        card=CardRef("392081", f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
        proof=Proof("AAECAwQFBgcICQoLDA0ODw", "A" * 86))


def append_events(db: Path, count: int, start: int = 0) -> list[str]:
    """Record `count` events in the terminal's queue (as the tap path does); their ids."""
    queue = EventQueue.open(db)
    try:
        return [queue.append(make_event(start + i), boot_id="test", mono_ns=i).id
                for i in range(count)]
    finally:
        queue.close()


def terminal_settings(broker: DevBroker, state_dir: Path, tid: str = "t-0001",
                      **mqtt: Any) -> Settings:
    ident = broker.identity(tid)
    options: dict[str, Any] = {
        "url": broker.url, "ca_file": broker.ca_file, "cert_file": ident.cert_file,
        "key_file": ident.key_file, "ack_timeout_s": 3.0, "status_interval_s": 2.0,
        "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, **mqtt}
    return Settings(terminal={"id": tid, "muni": broker.muni},
                    paths={"state_dir": state_dir},
                    verify={"root_public_key": ROOT_HEX}, mqtt=options)


def receiver_db_ids(db: Path) -> dict[str, int]:
    """{event id: copies received} in the city's store."""
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(conn.execute("SELECT id, copies FROM events").fetchall())


class ReceiverProc:
    """scripts/city_receiver.py run, in a subprocess, ready once subscribed."""

    def __init__(self, broker: DevBroker, db: Path, workdir: Path, *extra: str,
                 name: str = "r1", group: str = "city") -> None:
        ident = broker.receiver
        self.ready = workdir / f"{name}.ready"
        self.ready.unlink(missing_ok=True)
        self.log = workdir / f"{name}.log"
        cmd = [sys.executable, str(RECEIVER), "run", "--url", broker.city_url,
               "--ca", str(broker.ca_file), "--cert", str(ident.cert_file),
               "--key", str(ident.key_file), "--db", str(db), "--group", group,
               "--client-id", f"city-{name}", "--ready-file", str(self.ready), *extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=REPO)
        wait_for(self.ready.exists, 15, f"receiver {name} subscribed")

    def kill(self) -> None:
        end_process(self.proc, kill=True)

    def stop(self) -> None:
        end_process(self.proc)


class SyncProc:
    """CitySync + EventQueue in a subprocess (`sukumo-reader sync`), as the daemon runs it."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reader", "sync",
                 "--settings-json", settings.model_dump_json()],
                stdout=out, stderr=out, cwd=REPO)

    def kill(self) -> None:
        end_process(self.proc, kill=True)

    def stop(self) -> None:
        end_process(self.proc, timeout=15)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    b = DevBroker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def dep(tmp_path: Path, broker: DevBroker, request: pytest.FixtureRequest) -> Deployment:
    """A terminal on `broker`, its tid the test module's TID (`dep = mqtt_env.dep`)."""
    tid = request.module.TID
    terminal = Deployment(tmp_path / "terminal", tid=tid)
    terminal.write_config(mqtt_section(broker, tid))
    return terminal


@pytest.fixture
def daemon(dep: Deployment) -> Iterator[DaemonProc]:
    """The real daemon of `dep`, ready, killed at the end."""
    proc = DaemonProc(dep).wait_ready()
    yield proc
    proc.kill()


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[list[ReceiverProc]]:
    """A list the test appends ReceiverProc to; all are stopped at the end."""
    procs: list[ReceiverProc] = []
    yield procs
    for proc in procs:
        proc.stop()


def raw_client(broker: DevBroker, cn: str, *, ca_file: Path | None = None,
               client_id: str | None = None) -> mqtt.Client:
    """A bare paho client with `cn`'s certificate, connected and looping (ACL probes)."""
    ident = broker.identity(cn)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=client_id or f"probe-{cn}-{uuid7_str()[-8:]}")
    client.tls_set_context(tls_context(ca_file or broker.ca_file, ident.cert_file,
                                       ident.key_file))
    client.connect(broker.host, broker.port_for(cn))
    client.loop_start()
    wait_for(client.is_connected, 5, f"{cn} connected")
    return client


def close_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def trust_for(settings: Settings) -> TrustStore:
    return TrustStore.from_settings(settings)


def queue_left(db: Path) -> int:
    """Events still in the terminal's queue and not set aside (pending or in flight)."""
    queue = EventQueue.open(db)
    try:
        return queue.summary().pending
    finally:
        queue.close()


def assert_stored_once(city_db: Path, ids: list[str], terminal_db: Path,
                       timeout: float = 30) -> dict[str, int]:
    """Every event reached the city exactly once (UNIQUE id, count equal), the terminal's
    queue is empty (each was acked), and the city sees no hole in the seq. The copies map."""
    wanted = set(ids)
    wait_for(lambda: wanted <= set(receiver_db_ids(city_db)), timeout, "all events stored")
    wait_for(lambda: queue_left(terminal_db) == 0, timeout, "all events acked")
    stored = receiver_db_ids(city_db)
    assert set(stored) == wanted and len(stored) == len(ids)
    with sqlite3.connect(city_db) as conn:
        seqs = sorted(s for (s,) in conn.execute("SELECT seq FROM events"))
    assert seqs == list(range(1, len(ids) + 1))  # each seq once, no gap
    return stored


def retained_status(broker: DevBroker, topic: str) -> dict:
    """The retained message on `topic` (status, §4), as a city subscriber sees it."""
    got: list[bytes] = []
    city = raw_client(broker, RECEIVER_CN)
    city.on_message = lambda _c, _u, m: got.append(m.payload)
    city.subscribe(topic, 1)
    wait_for(lambda: got, 5, "retained status")
    close_client(city)
    return json.loads(got[-1])


def mqtt_section(broker: DevBroker, tid: str, **settings: float | str) -> str:
    """The [mqtt] table of reader.toml for terminal `tid` on `broker`: its own certificate,
    and the quick status and reconnects the daemon tests wait on (override any)."""
    ident = broker.identity(tid)
    values: dict[str, float | str] = {
        "url": broker.url, "ca_file": str(broker.ca_file), "cert_file": str(ident.cert_file),
        "key_file": str(ident.key_file), "status_interval_s": 1.0, "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0, **settings}
    return "[mqtt]\n" + "".join(
        f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def publish_config(broker: DevBroker, dep: Any, settings: dict[str, Any],
                   version: int) -> None:
    """What the city does: sign a config bundle with an ops key of the deployment's
    issuer and publish it retained on the terminal's config topic."""
    bundle = dep.issuer.config_bundle(dep.tid, settings, version=version)
    city = raw_client(broker, RECEIVER_CN)
    try:
        topic = Topics("sukumo/v1", dep.issuer.muni, dep.tid).bundle("config")
        city.publish(topic, bundle, qos=1, retain=True).wait_for_publish(5)
    finally:
        close_client(city)
