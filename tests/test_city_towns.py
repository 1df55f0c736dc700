"""Two towns on one platform: one broker, one `sukumo-city run`, one database. A terminal
of town A can neither publish as town B nor read anything of it (the broker's ACL), and
town A's staff reading the database get none of town B's rows (PostgreSQL's row-level
security, not the application)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_env import (
    ReceiverProc,
    SyncProc,
    append_events,
    city_config,
    city_database,
    close_client,
    publish_codes,
    queue_left,
    raw_client,
    receiver_db_ids,
    terminal_settings,
    wait_for,
)
from pg_env import PgCluster, PgDatabase, pg_cluster  # noqa: F401

from city.cli import main
from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.wire.topics import Topics

pytestmark = pytest.mark.mqtt

A, B = "392081", "392014"  # 宿毛市, 土佐清水市
TA, TB = "t-a001", "t-b001"
A1, B1 = Topics("sukumo/v1", A, TA), Topics("sukumo/v1", B, TB)
NOT_AUTHORIZED = 0x87


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    b = DevBroker(tmp_path / "broker", towns={A: (TA,), B: (TB,)}).start()
    yield b
    b.stop()


def test_a_terminal_of_town_a_can_neither_publish_as_town_b_nor_read_it(
        broker: DevBroker) -> None:
    ta = raw_client(broker, TA)
    forged = [f"sukumo/v1/{B}/{TA}/events", f"sukumo/v1/{B}/{TA}/status", B1.events,
              B1.status, f"sukumo/v1/{A}/{TB}/events", A1.acks, A1.trust]
    codes = publish_codes(ta, [A1.events, A1.status, *forged])
    # accepted (0x10: no subscriber yet), refused for everything of the other town
    assert codes[A1.events] in (0, 0x10) and codes[A1.status] in (0, 0x10)
    assert {t: codes[t] for t in forged} == dict.fromkeys(forged, NOT_AUTHORIZED)

    got: list[str] = []
    ta.on_message = lambda _c, _u, m: got.append(m.topic)
    ta.subscribe([("sukumo/v1/#", 1), (f"sukumo/v1/{B}/#", 1), (B1.acks, 1), (B1.trust, 1),
                  (A1.trust, 1), (A1.acks, 1)])
    time.sleep(0.3)
    city, tb = raw_client(broker, RECEIVER_CN), raw_client(broker, TB)
    try:
        for client, topic in ((city, B1.trust), (city, B1.denylist), (city, B1.acks),
                              (city, B1.config), (tb, B1.events), (tb, B1.status),
                              (city, A1.trust), (city, A1.acks)):
            client.publish(topic, b"x", qos=1).wait_for_publish(5)
        wait_for(lambda: {A1.trust, A1.acks} <= set(got), 5, "town A's own messages")
        time.sleep(0.5)
        # Every town's denylist is readable (a terminal follows those of the towns whose
        # cards it accepts: city-integration.md §9); nothing else of B.
        assert not [t for t in got if (f"/{B}/" in t or TB in t) and t != B1.denylist], got
    finally:
        for client in (ta, tb, city):
            close_client(client)


def test_two_towns_share_one_intake_and_each_town_reads_only_its_own(
        broker: DevBroker, pg_cluster: PgCluster, tmp_path: Path, capsys) -> None:  # noqa: F811
    city_db = tmp_path / "city"
    receiver = ReceiverProc(broker, city_db, tmp_path)
    a = terminal_settings(broker, tmp_path / "ta", TA, muni=A)
    b = terminal_settings(broker, tmp_path / "tb", TB, muni=B)
    # Each town's residents at its own terminals (a neighbour's resident: test_neighbours).
    ids_a = append_events(a.paths.database, 30, muni=A)
    ids_b = append_events(b.paths.database, 20, muni=B)
    syncs = [SyncProc(a, tmp_path / "a.log"), SyncProc(b, tmp_path / "b.log")]
    try:
        wait_for(lambda: set(receiver_db_ids(city_db)) == {*ids_a, *ids_b}, 30,
                 "both towns' events stored")
        wait_for(lambda: queue_left(a.paths.database) + queue_left(b.paths.database) == 0,
                 30, "both towns' events acked")
    finally:
        for sync in syncs:
            sync.stop()
        receiver.stop()
    db = PgDatabase(pg_cluster, city_database(city_db))
    config = city_config(broker, city_db, tmp_path / "admin.toml")
    for town in (A, B):
        assert main(["--config", str(config), "add-town", town]) == 0
    assert capsys.readouterr().out.split() == [f"town_{A}", f"town_{B}"]
    staff_a, staff_b = f"staff_a_{db.name}", f"staff_b_{db.name}"
    db.query(f"CREATE ROLE {staff_a} LOGIN IN ROLE town_{A}")
    db.query(f"CREATE ROLE {staff_b} LOGIN IN ROLE town_{B}")
    try:
        seen_a = db.query("SELECT id::text, muni, tid FROM city.events_v1", user=staff_a)
        assert {i for i, _, _ in seen_a} == set(ids_a)
        assert {(m, t) for _, m, t in seen_a} == {(A, TA)}
        assert {i for (i,) in db.query("SELECT id::text FROM city.events_v1",
                                       user=staff_b)} == set(ids_b)
        assert db.query("SELECT muni, tid FROM city.terminals_v1", user=staff_a) == [(A, TA)]
        assert db.query("SELECT count(*) FROM city.events_v1 WHERE muni = %s", (B,),
                        user=staff_a) == [(0,)]
    finally:
        db.query(f"DROP ROLE {staff_a}")
        db.query(f"DROP ROLE {staff_b}")
