"""The city's database through a real PostgreSQL 15 (tests/pg_env.py): migrations, the
id kept unique across monthly partitions, gaps kept incrementally, retention by dropping
partitions, and two towns kept apart by row-level security."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from daemon_env import language_env
from pg_env import PgDatabase, pg, pg_cluster  # noqa: F401

from city import db
from city.cli import main
from reader.system.uuid7 import uuid7_str

TOWN_A, TOWN_B = "392081", "392014"


def uuid7_at(at: dt.datetime) -> str:
    """A UUIDv7 of the instant `at`, as a terminal makes it at the tap (RFC 9562 §5.7)."""
    ms = int(at.timestamp() * 1000)
    return str(uuid.UUID(int=ms << 80 | 0x7 << 76 | 0b10 << 62 | secrets.randbits(62)))


def event(seq: int, at: dt.datetime | None = None, mid: str = "M00000001") -> db.StoredEvent:
    if at is None:
        return db.StoredEvent(uuid7_str(), seq, dt.datetime.now(dt.UTC), "checkin",
                              "sukumo-library", "accepted", None, mid, {"seq": seq})
    return db.StoredEvent(uuid7_at(at), seq, at, "checkin", "sukumo-library", "accepted",
                          None, mid, {"seq": seq, "note": "宿毛"})


def config_file(tmp_path: Path, dsn: str, **database: object) -> Path:
    path = tmp_path / "city.toml"
    extra = "".join(f"{k} = {v!r}\n" for k, v in database.items())
    path.write_text(f"[database]\ndsn = {dsn!r}\n{extra}")
    return path


@pytest.fixture
def store(pg: PgDatabase):  # noqa: F811
    db.migrate(pg.dsn)
    s = db.Store(pg.dsn).open(wait=True)
    s.maintain(retention_months=3, months_ahead=1)
    yield s
    s.close()


def test_migrate_twice_changes_nothing_the_second_time(pg: PgDatabase, tmp_path: Path,  # noqa: F811
                                                       capsys) -> None:
    config = config_file(tmp_path, pg.dsn)
    assert main(["--config", str(config), "migrate"]) == 0
    assert "0001_pre_initial.sql" in capsys.readouterr().out
    tables = pg.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'city'")
    assert main(["--config", str(config), "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert pg.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'city'") == tables
    # Every migration once, in order.
    assert pg.query("SELECT name FROM city.migrations ORDER BY name") == [
        (name,) for name, _ in db.migrations()]


def test_a_missing_dsn_or_a_bad_setting_exits_2_naming_the_key(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    (tmp_path / "empty.toml").write_text("")
    assert main(["--config", str(tmp_path / "empty.toml"), "migrate"]) == 2
    assert "database.dsn" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[database]\ndsn = 'x'\nretention_months = 0\n")
    assert main(["--config", str(tmp_path / "bad.toml"), "migrate"]) == 2
    assert "database.retention_months" in capsys.readouterr().err
    monkeypatch.setenv("SUKUMO_CITY_MQTT__GROUP", "a/b")
    assert main(["--config", str(tmp_path / "empty.toml"), "migrate"]) == 2
    err = capsys.readouterr().err
    assert "mqtt.group" in err and "SUKUMO_CITY_MQTT__GROUP" in err


def test_an_unreachable_database_is_said_with_the_fix(tmp_path: Path, capsys) -> None:
    config = config_file(tmp_path, "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert main(["--config", str(config), "migrate"]) == 3
    assert "[database] dsn" in capsys.readouterr().err


def test_a_resent_event_is_counted_never_stored_twice(store: db.Store, pg: PgDatabase) -> None:  # noqa: F811
    batch = [event(1), event(2), event(3)]
    assert store.store_batch(TOWN_A, "t-0001", batch, "r1") == db.Stored(3, 0)
    assert store.store_batch(TOWN_A, "t-0001", [batch[1], batch[2], event(4)], "r2") \
        == db.Stored(1, 2)
    assert pg.query("SELECT count(*) FROM city.events") == [(4,)]
    copies = dict(pg.query("SELECT id::text, copies FROM city.event_ids"))
    assert copies[batch[1].id] == 2 and copies[batch[0].id] == 1


def test_the_id_is_unique_even_when_a_copy_claims_another_month(store: db.Store,
                                                                pg: PgDatabase) -> None:  # noqa: F811
    first = event(1)
    store.store_batch(TOWN_A, "t-0001", [first], "r1")
    moved = db.StoredEvent(first.id, 1, first.at - dt.timedelta(days=40), *(
        first.mode, first.facility, first.result, first.reason, first.member_id, first.body))
    assert store.store_batch(TOWN_A, "t-0001", [moved], "r1") == db.Stored(0, 1)
    assert pg.query("SELECT count(*) FROM city.events") == [(1,)]


def test_gaps_are_kept_per_terminal_as_batches_arrive(store: db.Store, pg: PgDatabase) -> None:  # noqa: F811
    store.store_batch(TOWN_A, "t-0001", [event(n) for n in (2, 3, 6, 7, 10)], "r1")
    store.store_batch(TOWN_A, "t-0002", [event(n) for n in (1, 2, 3)], "r1")
    holes = [(g["tid"], g["first_missing"], g["last_missing"]) for g in store.gaps()]
    assert holes == [("t-0001", 1, 1), ("t-0001", 4, 5), ("t-0001", 8, 9)]
    store.store_batch(TOWN_A, "t-0001", [event(n) for n in (1, 4, 5, 8, 9)], "r1")
    assert store.gaps() == []
    # one range per terminal is all that is kept: no scan of the events
    assert pg.query("SELECT tid, lo, hi FROM city.seq_ranges ORDER BY tid") == [
        ("t-0001", 1, 10), ("t-0002", 1, 3)]


def test_gaps_command_lists_the_holes_and_exits_1(store: db.Store, pg: PgDatabase,  # noqa: F811
                                                  tmp_path: Path, capsys) -> None:
    config = config_file(tmp_path, pg.dsn)
    assert main(["--config", str(config), "gaps"]) == 0
    store.store_batch(TOWN_A, "t-0001", [event(n) for n in (1, 2, 5)], "r1")
    capsys.readouterr()
    assert main(["--config", str(config), "gaps"]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{TOWN_A}/t-0001: seq 3..4", "1 gap(s)"]


def test_summary_says_per_town_what_is_stored_and_missing(store: db.Store, pg: PgDatabase,  # noqa: F811
                                                         tmp_path: Path, capsys) -> None:
    store.store_batch(TOWN_A, "t-0001", [event(n) for n in (1, 2, 5)], "r1")
    store.store_batch(TOWN_A, "t-0002", [event(1)], "r1")
    store.store_batch(TOWN_B, "t-0100", [event(1), event(2)], "r1")
    capsys.readouterr()
    assert main(["--config", str(config_file(tmp_path, pg.dsn)), "summary"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{TOWN_B}: 1 of 1 terminal(s) online, 2 event(s) stored, 0 missing",
        f"{TOWN_A}: 2 of 2 terminal(s) online, 4 event(s) stored, 2 missing"]


def test_retention_drops_whole_old_months_and_keeps_the_recent(store: db.Store,
                                                               pg: PgDatabase) -> None:  # noqa: F811
    now = dt.datetime.now(dt.UTC)
    old = now.replace(day=1) - dt.timedelta(days=75)  # two or three months back
    pg.query("SELECT city.ensure_month(%s::date)", (old.date(),))
    store.store_batch(TOWN_A, "t-0001", [event(1, at=old)], "r1")
    store.store_batch(TOWN_A, "t-0001", [event(2, at=now)], "r1")
    done = store.maintain(retention_months=2, months_ahead=1)
    assert done.dropped == [f"events_y{old:%Y}m{old:%m}"]
    assert pg.query("SELECT seq FROM city.events") == [(2,)]
    assert pg.query("SELECT count(*) FROM city.event_ids") == [(1,)]
    assert store.maintain(retention_months=2, months_ahead=1).dropped == []


def test_a_town_reads_only_its_own_rows_and_the_prefecture_reads_all(
        store: db.Store, pg: PgDatabase) -> None:  # noqa: F811
    store.store_batch(TOWN_A, "t-a001", [event(1, mid="MA"), event(2, mid="MA")], "r1")
    store.store_batch(TOWN_B, "t-b001", [event(1, mid="MB")], "r1")
    assert store.add_town(TOWN_A) == f"town_{TOWN_A}"
    store.add_town(TOWN_B)
    staff_a, staff_b, pref = (f"staff_{pg.name}_{n}" for n in ("a", "b", "p"))
    pg.query(f"CREATE ROLE {staff_a} LOGIN IN ROLE town_{TOWN_A}")
    pg.query(f"CREATE ROLE {staff_b} LOGIN IN ROLE town_{TOWN_B}")
    pg.query(f"CREATE ROLE {pref} LOGIN IN ROLE city_prefecture")
    try:
        for view in ("city.events_v1", "city.terminals_v1", "city.terminals",
                     "city.event_ids", "city.gaps_v1"):
            assert {m for (m,) in pg.query(f"SELECT muni FROM {view}", user=staff_a)} \
                <= {TOWN_A}, view
        assert pg.query("SELECT member_id FROM city.events_v1 ORDER BY seq", user=staff_a) \
            == [("MA",), ("MA",)]
        assert pg.query("SELECT member_id, tid FROM city.events_v1", user=staff_b) \
            == [("MB", "t-b001")]
        # asking for the other town by name returns nothing, not an error
        assert pg.query("SELECT * FROM city.events_v1 WHERE muni = %s", (TOWN_B,),
                        user=staff_a) == []
        assert pg.query("SELECT count(*) FROM city.events_v1", user=pref) == [(3,)]
        # events only through events_v1 (which masks other towns' residents: 横展開)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg.query("SELECT * FROM city.events", user=staff_a)
        # a partition read directly is not a way around the policy
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg.query(f"SELECT * FROM city.events_y{dt.datetime.now(dt.UTC):%Ym%m}",
                     user=staff_a)
        # and a town's staff cannot write
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg.query("DELETE FROM city.events", user=staff_a)
    finally:
        for role in (staff_a, staff_b, pref):
            pg.query(f"DROP ROLE {role}")


def test_the_city_commands_speak_japanese_under_a_japanese_locale(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("")
    proc = subprocess.run([sys.executable, "-m", "city.cli", "--config",
                           str(tmp_path / "empty.toml"), "migrate"], capture_output=True,
                          text=True, env=language_env("ja_JP.UTF-8"), timeout=60)
    assert proc.returncode == 2
    assert "設定 database.dsn が空です" in proc.stderr and "SUKUMO_CITY_DATABASE__DSN" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_signing_a_missing_payload_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.toml").write_text("")
    (tmp_path / "ops.key").write_text("01" * 32)
    code = main(["--config", str(tmp_path / "empty.toml"), "bundle", "sign", "denylist",
                 str(tmp_path / "nope.json"), "--muni", "392081", "--offline", "--version",
                 "2", "--key-file", str(tmp_path / "ops.key"), "--kid", "0905", "--out",
                 str(tmp_path / "d.cbor")])
    assert code == 2 and "nope.json" in capsys.readouterr().err
    assert not (tmp_path / "d.cbor").exists()
