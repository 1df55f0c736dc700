"""Fixtures for the sync tests: a real mosquitto (reader.devtools.broker), the city's
intake (`sukumo-city run`) in a subprocess on a real PostgreSQL (tests/pg_env.py),
terminal settings, events, and CitySync in a subprocess.

Nothing is mocked: TLS with per-terminal certificates, the §6 ACL, SQLite on the
terminal, PostgreSQL on the city's side.
"""

from __future__ import annotations

import hashlib
import json
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

import pg_env  # noqa: E402
from daemon_env import DaemonProc, Deployment  # noqa: E402
from spec_vectors import VECTORS_PATH  # noqa: E402
from waiting import end_process, wait_for  # noqa: E402

from reader.bundles.store import TrustStore  # noqa: E402
from reader.config import Settings  # noqa: E402
from reader.devtools.broker import RECEIVER_CN, DevBroker, free_port  # noqa: E402
from reader.queue import EventQueue  # noqa: E402
from reader.sync.endpoint import tls_context  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa
from reader.wire.event import CardRef, Event, Mode, Proof  # noqa: E402
from reader.wire.topics import Topics  # noqa: E402

VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text()) if VECTORS_PATH.exists() else {}
ROOT_HEX = VECTORS.get("root_public_hex", "")


def make_event(n: int = 0, muni: str = "392081") -> Event:
    """A tap event with every mqtt-v1 §2 field except seq; the card of a resident of
    `muni`."""
    return Event(
        id=uuid7_str(), at_ms=time.time_ns() // 1_000_000, clock_synced=True,
        mode=Mode.CHECKIN, facility="sukumo-library", reason=None,
        card=CardRef(muni, f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
        proof=Proof("AAECAwQFBgcICQoLDA0ODw", "A" * 86))


def append_events(db: Path, count: int, start: int = 0, muni: str = "392081") -> list[str]:
    """Record `count` events in the terminal's queue (as the tap path does); their ids."""
    queue = EventQueue.open(db)
    try:
        return [queue.append(make_event(start + i, muni), boot_id="test", mono_ns=i).id
                for i in range(count)]
    finally:
        queue.close()


def terminal_settings(broker: DevBroker, state_dir: Path, tid: str = "t-0001",
                      *, muni: str | None = None, **mqtt: Any) -> Settings:
    ident = broker.identity(tid)
    options: dict[str, Any] = {
        "url": broker.url, "ca_file": broker.ca_file, "cert_file": ident.cert_file,
        "key_file": ident.key_file, "ack_timeout_s": 3.0, "status_interval_s": 2.0,
        "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, **mqtt}
    return Settings(terminal={"id": tid, "muni": muni or broker.muni},
                    paths={"state_dir": state_dir},
                    verify={"root_public_key": ROOT_HEX}, mqtt=options)


def city_database(db: Path) -> str:
    """The PostgreSQL database standing for the city store `db` (a path, as the tests
    name their stores): one per path, in the session's cluster."""
    return "city_" + hashlib.sha1(str(Path(db).resolve()).encode()).hexdigest()[:16]


def city_dsn(db: Path) -> str:
    """The DSN of `db`'s database, made and migrated on first use."""
    from city.db import migrate

    cluster, name = pg_env.cluster(), city_database(db)
    if not cluster.database_exists(name):
        cluster.create_database(name)
        migrate(cluster.dsn(name))
    return cluster.dsn(name)


def receiver_query(db: Path, sql: str) -> list[tuple]:
    """Rows of `sql` in `db`'s city database; [] when nothing was ever stored there."""
    cluster = pg_env._cluster
    if cluster is None or not cluster.database_exists(city_database(db)):
        return []
    return pg_env.PgDatabase(cluster, city_database(db)).query(sql)


def receiver_db_ids(db: Path) -> dict[str, int]:
    """{event id: copies received} in the city's store."""
    return dict(receiver_query(db, "SELECT id::text, copies FROM city.event_ids"))


def receiver_db_seqs(db: Path) -> list[int]:
    """Every stored event's seq, sorted (one terminal's store)."""
    return [s for (s,) in receiver_query(db, "SELECT seq FROM city.events ORDER BY seq")]


def city_config(broker: DevBroker, db: Path | None, path: Path, *, name: str = "r1",
                group: str = "city", keepalive_s: int = 30, web_port: int = 0,
                **intake: float | int) -> Path:
    """city.toml for an instance receiving from `broker` into `db`'s database (None: no
    database, for the commands that only publish); its fleet page and /metrics on
    `web_port` (0: a free port of its own, so that instances never share one)."""
    ident = broker.receiver
    mqtt_values = {"url": broker.city_url, "ca_file": str(broker.ca_file),
                   "cert_file": str(ident.cert_file), "key_file": str(ident.key_file),
                   "group": group, "client_id": f"city-{name}", "reconnect_max_s": 1.0,
                   "keepalive_s": keepalive_s}
    intake_values = {"retry_s": 5.0, **intake}
    database = "" if db is None else f"[database]\ndsn = {json.dumps(city_dsn(db))}\n\n"
    path.write_text(
        database + "[mqtt]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in mqtt_values.items())
        + "\n[intake]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in intake_values.items())
        + f'\n[web]\nlisten = "127.0.0.1:{web_port or free_port()}"\n'
        + '\n[log]\nlevel = "DEBUG"\n')
    return path


class ReceiverProc:
    """`sukumo-city run` on `db`'s database, in a subprocess, ready once subscribed."""

    def __init__(self, broker: DevBroker, db: Path, workdir: Path, *extra: str,
                 name: str = "r1", group: str = "city", keepalive_s: int = 30,
                 **intake: float | int) -> None:
        self.ready = workdir / f"{name}.ready"
        self.ready.unlink(missing_ok=True)
        self.log = workdir / f"{name}.log"
        self.web_port = free_port()
        self.config = city_config(broker, db, workdir / f"{name}.toml", name=name,
                                  group=group, keepalive_s=keepalive_s,
                                  web_port=self.web_port, **intake)
        cmd = [sys.executable, "-m", "city.cli", "--config", str(self.config), "run",
               "--ready-file", str(self.ready), *extra]
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


def publish_codes(client: mqtt.Client, topics: list[str]) -> dict[str, int]:
    """Publish b"x" QoS 1 on each topic; the PUBACK reason code of each (0x87: refused by
    the ACL, the connection staying up)."""
    codes: dict[int, int] = {}
    client.on_publish = lambda _c, _u, mid, rc, _p: codes.__setitem__(mid, rc.value)
    mids = {t: client.publish(t, b"x", qos=1).mid for t in topics}
    wait_for(lambda: len(codes) == len(topics), 5, "PUBACKs")
    return {t: codes[mid] for t, mid in mids.items()}


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
    assert receiver_db_seqs(city_db) == list(range(1, len(ids) + 1))  # each seq once, no gap
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
