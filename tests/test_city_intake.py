"""`sukumo-city run` under faults, through the real stacks: a private PostgreSQL 15
(pg_env), mosquitto with TLS and the §6 ACL (DevBroker), the terminal's own sync process
(`sukumo-reader sync`). Each fault ends with every event stored exactly once, and the
fault said in the city's log at error level, with the fix.

(Kill -9 of one of two instances in a share group: test_sync_receivers.py; a broker
killed and restarted mid-stream: test_sync_delivery.py.)
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import mqtt_env
import psycopg
import pytest
from disk_env import fill_disk, mounted_tmpfs
from mqtt_env import (
    ReceiverProc,
    SyncProc,
    append_events,
    assert_stored_once,
    city_config,
    city_database,
    close_client,
    make_event,
    queue_left,
    raw_client,
    receiver_db_ids,
    receiver_query,
    terminal_settings,
    wait_for,
)
from pg_env import PgCluster, pg_cluster  # noqa: F401
from waiting import end_process

from city.db import migrate
from reader.devtools.broker import DevBroker
from reader.wire.event import dumps
from reader.wire.messages import build_batch
from reader.wire.topics import Topics

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixtures
receivers = mqtt_env.receivers


def log_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def errors(path: Path) -> list[str]:
    return [line["msg"] for line in log_lines(path) if line.get("level") == "error"]


def test_a_postgresql_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
        broker: DevBroker, receivers: list, pg_cluster: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    city_db = tmp_path / "city"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=20, ack_timeout_s=2)
    ids = append_events(settings.paths.database, 3000)
    sync = SyncProc(settings, tmp_path / "sync.log")
    try:
        wait_for(lambda: len(receiver_db_ids(city_db)) >= 300, 30, "drain under way")
        pg_cluster.restart()
        assert len(receiver_db_ids(city_db)) < 3000  # restarted mid-stream indeed
        assert_stored_once(city_db, ids, settings.paths.database, timeout=60)
    finally:
        sync.stop()
    # Whether a batch met the restart, and so logged "database lost", depends on timing:
    # that line is tested where the database stays down (test_city_metrics).


def test_a_full_postgresql_disk_delays_the_acks_until_there_is_room(
        broker: DevBroker, receivers: list, pg_cluster: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    city_db = tmp_path / "city"
    name = city_database(city_db)
    space = pg_cluster.root / f"space-{name}"
    space.mkdir()
    with mounted_tmpfs(space, 40) as mount:
        pg_cluster.tablespace_dir(mount)
        pg_cluster.admin(f"CREATE TABLESPACE ts_{name} LOCATION '{mount}'")
        try:
            pg_cluster.create_database(name, tablespace=f"ts_{name}")
            migrate(pg_cluster.dsn(name))
            receivers.append(ReceiverProc(broker, city_db, tmp_path))
            settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=50,
                                         ack_timeout_s=2)
            ids = append_events(settings.paths.database, 20)
            sync = SyncProc(settings, tmp_path / "sync.log")
            try:
                assert_stored_once(city_db, ids, settings.paths.database)
                # Opened while there is room: a new connection to a database on a full
                # disk may fail to write its cache file (FATAL: could not write init
                # file), which is PostgreSQL's to say, not the intake's.
                watcher = psycopg.connect(pg_cluster.dsn(name), autocommit=True)
                ballast = fill_disk(mount)
                ids += append_events(settings.paths.database, 500, start=20)
                wait_for(lambda: any(m.startswith("database disk full")
                                     for m in errors(receivers[0].log)), 30,
                         "the full disk said")
                time.sleep(3)  # batches refused and re-sent meanwhile
                # Rows may still fit in pages PostgreSQL already has (how many is its
                # business): what holds is that an event is acked only once stored, and
                # that the rest wait, unacked, in the terminal's queue.
                with watcher:
                    def stored_is_acked() -> bool:
                        stored = watcher.execute(
                            "SELECT count(*) FROM city.event_ids").fetchone()[0]
                        return stored + queue_left(settings.paths.database) == 520
                    wait_for(stored_is_acked, 10, "what is stored, and only that, acked")
                assert queue_left(settings.paths.database) > 0  # the acks wait for room
                ballast.unlink()
                assert_stored_once(city_db, ids, settings.paths.database, timeout=60)
            finally:
                sync.stop()
                receivers.pop().stop()
        finally:
            pg_cluster.drop_database(name)
            pg_cluster.admin(f"DROP TABLESPACE IF EXISTS ts_{name}")
    said = [m for m in errors(tmp_path / "r1.log") if m.startswith("database disk full")]
    assert len(said) == 1 and "free space" in said[0]  # said once, not once per batch


def test_a_locked_table_delays_acks_but_never_stalls_the_mqtt_link(
        broker: DevBroker, receivers: list, pg_cluster: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    city_db = tmp_path / "city"
    # keepalive 5 s: were the network loop waiting on the database, the broker would
    # drop this instance after 7.5 s of the 10 s lock.
    receivers.append(ReceiverProc(broker, city_db, tmp_path, keepalive_s=5, retry_s=60))
    settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=50, ack_timeout_s=2)
    dsn = pg_cluster.dsn(city_database(city_db))
    with psycopg.connect(dsn) as lock:
        lock.execute("LOCK TABLE city.events IN EXCLUSIVE MODE")  # reads pass, writes wait
        ids = append_events(settings.paths.database, 400)
        sync = SyncProc(settings, tmp_path / "sync.log")
        try:
            time.sleep(10)
            assert receiver_db_ids(city_db) == {}  # nothing committed ...
            assert queue_left(settings.paths.database) == 400  # ... so nothing acked
            lock.rollback()
            copies = assert_stored_once(city_db, ids, settings.paths.database, timeout=60)
        finally:
            sync.stop()
    log = receivers[0].log.read_text()
    assert "broker connection lost" not in log
    assert "city-r1 has exceeded timeout" not in broker.log_file.read_text()
    # the terminal sent the waiting batches again meanwhile: counted, not stored twice
    assert max(copies.values()) >= 2


def test_a_full_intake_queue_drops_batches_unacked_and_the_terminal_sends_them_again(
        broker: DevBroker, receivers: list, pg_cluster: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    city_db = tmp_path / "city"
    # One worker, room for one batch: while the worker waits on the lock, the batches
    # behind find the queue full and are dropped without an ack.
    receivers.append(ReceiverProc(broker, city_db, tmp_path, retry_s=60, workers=1,
                                  queue_max=1))
    settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=20, ack_timeout_s=2)
    with psycopg.connect(pg_cluster.dsn(city_database(city_db))) as lock:
        lock.execute("LOCK TABLE city.events IN EXCLUSIVE MODE")
        ids = append_events(settings.paths.database, 200)
        sync = SyncProc(settings, tmp_path / "sync.log")
        try:
            wait_for(lambda: "intake queue full" in receivers[0].log.read_text(), 20,
                     "a batch dropped for a full queue")
            assert queue_left(settings.paths.database) == 200  # none acked meanwhile
            lock.rollback()
            # Backed-off resends (the ack wait doubles per timeout, up to 10x): give them time.
            assert_stored_once(city_db, ids, settings.paths.database, timeout=120)
        finally:
            sync.stop()


def test_statuses_and_the_will_fill_the_terminals_view(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    city_db = tmp_path / "city"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    settings = terminal_settings(broker, tmp_path / "t1", status_interval_s=1.0)
    append_events(settings.paths.database, 5)
    sync = SyncProc(settings, tmp_path / "sync.log")
    try:
        row = wait_for(lambda: [r for r in receiver_query(
            city_db, "SELECT tid, online, pending, app_version, bundle_versions, alarms"
            " FROM city.terminals_v1") if r[2] == 0], 30, "a status after the drain")
        tid, online, _pending, app, bundles, alarms = row[0]
        assert (tid, online, alarms) == ("t-0001", True, [])
        assert app and set(bundles) == {"trust", "denylist", "config"}
    finally:
        sync.kill()  # no DISCONNECT: the broker publishes the Will (§4)
    wait_for(lambda: receiver_query(city_db, "SELECT online FROM city.terminals_v1")
             == [(False,)], 30, "offline from the Will")


def _run_city(config: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "city.cli", "--config", str(config),
                                 "run"], stdout=out, stderr=out)


@pytest.mark.parametrize("fault", ["wrong_ca", "no_broker", "no_database"])
def test_a_refused_tls_a_missing_broker_a_lost_database_are_said_with_the_fix(
        broker: DevBroker, tmp_path: Path, fault: str) -> None:
    config = city_config(broker, tmp_path / "city", tmp_path / "city.toml")
    text = config.read_text()
    if fault == "wrong_ca":  # the city CA did not sign the broker's certificate
        text = text.replace(str(broker.ca_file), str(broker.city_ca_file))
    elif fault == "no_broker":
        broker.stop()
    else:
        text = text.replace(f"port={mqtt_env.pg_env.cluster().port}", "port=1")
    config.write_text(text)
    proc = _run_city(config, tmp_path / "city.log")
    expected = {"wrong_ca": ("TLS refused", "mqtt.ca_file"),
                "no_broker": ("broker unreachable", "mqtt.url"),
                "no_database": ("database lost", "[database] dsn")}[fault]
    try:
        said = wait_for(lambda: [m for m in errors(tmp_path / "city.log")
                                 if m.startswith(expected[0])], 20, expected[0])
        assert expected[1] in said[0]
        assert proc.poll() is None  # it keeps trying: the fault may be mended
    finally:
        end_process(proc)


def test_an_event_the_city_cannot_store_is_rejected_in_the_ack_and_the_rest_stored(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    city_db = tmp_path / "city"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    good, nul, no_time, other = (make_event(n).with_seq(n + 1).to_json() for n in range(4))
    nul["facility"] = "hall\u0000"  # PostgreSQL text refuses NUL
    no_time["at_ms"] = "soon"
    acks: list[dict] = []
    terminal = raw_client(broker, "t-0001")
    terminal.on_message = lambda _c, _u, m: acks.append(json.loads(m.payload))
    topics = Topics("sukumo/v1", broker.muni, "t-0001")
    terminal.subscribe(topics.acks, 1)
    time.sleep(0.3)
    try:
        terminal.publish(topics.events, build_batch("t-0001", "b-1", [
            dumps(e) for e in (good, nul, no_time, other)]), qos=1).wait_for_publish(5)
        ack = wait_for(lambda: acks and acks[0], 15, "the ack")
    finally:
        close_client(terminal)
    assert ack["batch"] == "b-1" and ack["ids"] == [good["id"], other["id"]]
    assert ack["rejected"] == [{"id": nul["id"], "error": "schema"},
                               {"id": no_time["id"], "error": "schema"}]
    assert set(receiver_db_ids(city_db)) == {good["id"], other["id"]}
