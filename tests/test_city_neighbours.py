"""横展開 in the city's database (real PostgreSQL 15, tests/pg_env.py): a resident of town B
taps at a terminal of town A. B's staff see their resident's tap, wherever it was; A's
staff see that a resident of B came, never who; the prefecture sees everything."""

from __future__ import annotations

import datetime as dt

import pytest
from pg_env import PgDatabase, pg, pg_cluster  # noqa: F401

from city import db
from reader.system.uuid7 import uuid7_str

TOWN_A, TOWN_B = "392081", "392014"


def tap(seq: int, card_muni: str | None, mid: str) -> db.StoredEvent:
    card = None if card_muni is None else {"muni": card_muni, "mid": mid,
                                           "sn": "04a1b2c3d4e5f607", "ap": "member"}
    proof = None if card is None else {"nonce": "AAECAwQFBgcICQoLDA0ODw", "sig": "A" * 86}
    body = {"id": "x", "seq": seq, "mode": "checkin", "facility": "sukumo-sports-center",
            "result": "accepted", "reason": None, "card": card, "proof": proof, "detail": {}}
    return db.StoredEvent(uuid7_str(), seq, dt.datetime.now(dt.UTC), "checkin",
                          "sukumo-sports-center", "accepted", None,
                          mid if card else None, body)


@pytest.fixture
def roles(pg: PgDatabase):  # noqa: F811
    db.migrate(pg.dsn)
    store = db.Store(pg.dsn).open(wait=True)
    store.maintain(retention_months=3, months_ahead=1)
    # At A's sports centre: a resident of A, a resident of B, and a card no town names.
    store.store_batch(TOWN_A, "t-a001", [tap(1, TOWN_A, "MA1"), tap(2, TOWN_B, "MB1"),
                                         tap(3, None, "")], "r1")
    # At B's own terminal: the same resident of B.
    store.store_batch(TOWN_B, "t-b001", [tap(1, TOWN_B, "MB1")], "r1")
    store.add_town(TOWN_A)
    store.add_town(TOWN_B)
    names = {k: f"staff_{pg.name}_{k}" for k in ("a", "b", "p")}
    pg.query(f"CREATE ROLE {names['a']} LOGIN IN ROLE town_{TOWN_A}")
    pg.query(f"CREATE ROLE {names['b']} LOGIN IN ROLE town_{TOWN_B}")
    pg.query(f"CREATE ROLE {names['p']} LOGIN IN ROLE city_prefecture")
    yield names
    store.close()
    for role in names.values():
        pg.query(f"DROP ROLE {role}")


def rows(pg: PgDatabase, user: str) -> list[tuple]:  # noqa: F811
    return pg.query("SELECT muni, tid, seq, card_muni, member_id, body -> 'card', "
                    "body -> 'proof' FROM city.events_v1 ORDER BY muni, tid, seq", user=user)


def test_the_terminals_town_sees_a_neighbour_came_but_not_who(
        pg: PgDatabase, roles: dict[str, str]) -> None:  # noqa: F811
    seen = rows(pg, roles["a"])
    assert [(m, t, s) for m, t, s, *_ in seen] == [
        (TOWN_A, "t-a001", 1), (TOWN_A, "t-a001", 2), (TOWN_A, "t-a001", 3)]
    own, neighbour, unnamed = seen
    assert own[3:] == (TOWN_A, "MA1", {"muni": TOWN_A, "mid": "MA1", "sn": "04a1b2c3d4e5f607",
                                       "ap": "member"},
                       {"nonce": "AAECAwQFBgcICQoLDA0ODw", "sig": "A" * 86})
    # B's resident at A's terminal: the town, nothing that names the card or the person.
    assert neighbour[3:] == (TOWN_B, None, {"muni": TOWN_B}, None)
    assert unnamed[3:] == (None, None, None, None)
    # Asking by member id or in the body finds nothing either.
    assert pg.query("SELECT count(*) FROM city.events_v1 WHERE body::text LIKE '%MB1%' "
                    "OR member_id = 'MB1'", user=roles["a"]) == [(0,)]


def test_the_cards_town_sees_its_resident_wherever_they_tapped(
        pg: PgDatabase, roles: dict[str, str]) -> None:  # noqa: F811
    seen = rows(pg, roles["b"])
    assert [(m, t, s, mid) for m, t, s, _, mid, *_ in seen] == [
        (TOWN_B, "t-b001", 1, "MB1"), (TOWN_A, "t-a001", 2, "MB1")]
    assert all(card["mid"] == "MB1" and proof is not None for *_, card, proof in seen)


def test_the_prefecture_sees_all_and_the_base_table_is_closed_to_towns(
        pg: PgDatabase, roles: dict[str, str]) -> None:  # noqa: F811
    import psycopg

    seen = rows(pg, roles["p"])
    assert len(seen) == 4 and [mid for *_, mid, _, _ in seen if mid] == ["MB1", "MA1", "MB1"]
    for who in ("a", "b"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg.query("SELECT member_id FROM city.events", user=roles[who])
