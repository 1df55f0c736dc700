"""横展開 through the real stacks: two towns on one mosquitto (TLS, the per-terminal ACL),
two development issuers, a real daemon of town A (392081) on the virtual reader, and the
real city service on PostgreSQL. A resident of town B (392014) taps at A's terminal:

- refused (`unknown_issuer`) until A's signed config bundle accepts town B, then accepted;
- revoked by B (one denylist publish on B's topic): refused at A's terminal too;
- a coupon kind paid by A never grants B's resident; one paid by B does;
- at the city, A's staff see that a resident of B came, never who; B's staff see it all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_env import DaemonProc, Deployment
from mqtt_env import (  # noqa: F401
    ReceiverProc,
    city_dsn,
    close_client,
    mqtt_section,
    raw_client,
    receiver_db_ids,
    receivers,
)
from waiting import wait_for

from reader.bundles.store import TrustStore
from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.emulator.issuer import DevIssuer
from reader.wire.topics import Topics

TOWN_A, TOWN_B = "392081", "392014"
TID_A = "t-a001"
pytestmark = pytest.mark.mqtt


@pytest.fixture
def towns(tmp_path: Path) -> Iterator[DevBroker]:
    broker = DevBroker(tmp_path / "broker", towns={TOWN_A: (TID_A,), TOWN_B: ("t-b001",)})
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def issuers() -> tuple[DevIssuer, DevIssuer]:
    return DevIssuer.generate(TOWN_A), DevIssuer.generate(TOWN_B)


def terminal_a(tmp_path: Path, broker: DevBroker, a: DevIssuer, b: DevIssuer,
               extra: str = "") -> Deployment:
    dep = Deployment(tmp_path / "terminal-a", tid=TID_A, issuer=a)
    TrustStore(bytes.fromhex(a.root_public_hex), TOWN_A, TID_A,
               dep.state / "bundles").apply("trust", a.trust_bundle(2, neighbours=[b]))
    dep.write_config(mqtt_section(broker, TID_A) + extra)
    return dep


def publish(broker: DevBroker, topic: str, data: bytes) -> None:
    """What the city does, retained, with its own certificate."""
    city = raw_client(broker, RECEIVER_CN)
    try:
        city.publish(topic, data, qos=1, retain=True).wait_for_publish(5)
    finally:
        close_client(city)


def accept_town_b(broker: DevBroker, dep: Deployment, daemon: DaemonProc, version: int,
                  **settings: Any) -> None:
    bundle = dep.issuer.config_bundle(TID_A, {"accept_munis": [TOWN_B], **settings},
                                      version=version)
    publish(broker, Topics("sukumo/v1", TOWN_A, TID_A).bundle("config"), bundle)
    wait_for(lambda: daemon.logged("config bundle applied"), 15, "the config bundle applied")
    wait_for(lambda: daemon.logged("neighbouring towns' denylists followed"), 15,
             "B's denylist followed")


def last_tap(daemon: DaemonProc, card: Any, count: int) -> dict[str, Any]:
    """Tap `card`; the daemon's record of it (the log line: result, reason, detail)."""
    daemon.feed(card)
    entry = daemon.wait_taps(count)[-1]
    return {**entry, "detail": entry.get("detail") or {}}


def queued(dep: Deployment, entry: dict[str, Any]) -> dict[str, Any]:
    """The mqtt-v1 §2 event of a logged tap, as the queue holds it (before any ack)."""
    return next(e for e in dep.events() if e["id"] == entry["id"])


def test_a_neighbours_card_only_where_the_bundle_allows_and_never_once_revoked(
        tmp_path: Path, towns: DevBroker, issuers: tuple[DevIssuer, DevIssuer]) -> None:
    a, b = issuers
    dep = terminal_a(tmp_path, towns, a, b)
    resident_b = b.issue_card("MB-0001", bytes.fromhex("0b0b0b0b0b0b0b01"))
    resident_a = a.issue_card("MA-0001", bytes.fromhex("0a0a0a0a0a0a0a01"))
    daemon = DaemonProc(dep).wait_ready()
    try:
        # Not accepted yet: B's issuer key is in the trust bundle, but the town is not.
        refused = last_tap(daemon, resident_b, 1)
        assert (refused["result"], refused["reason"]) == ("rejected", "unknown_issuer")
        assert last_tap(daemon, resident_a, 2)["result"] == "accepted"

        accept_town_b(towns, dep, daemon, version=1)
        accepted = last_tap(daemon, resident_b, 3)
        assert (accepted["result"], queued(dep, accepted)["card"]["muni"]) == (
            "accepted", TOWN_B)

        # B revokes its resident's card: one publish on B's own topic, signed by B's ops key.
        publish(towns, Topics("sukumo/v1", TOWN_B, "-").bundle("denylist"),
                b.denylist_bundle(version=1, serials=[bytes.fromhex("0b0b0b0b0b0b0b01")]))
        wait_for(lambda: [e for e in daemon.logged("bundle applied")
                          if e.get("muni") == TOWN_B], 15, "B's denylist applied at A")
        revoked = last_tap(daemon, resident_b, 4)
        assert (revoked["result"], revoked["reason"]) == ("rejected", "revoked")
        # A's own list is A's: the same serial on a card of A is not revoked.
        twin = a.issue_card("MA-0002", bytes.fromhex("0b0b0b0b0b0b0b01"))
        assert last_tap(daemon, twin, 5)["result"] == "accepted"

        # A denylist for B signed by a key the trust bundle does not name is refused, and
        # the held list stays in force.
        stranger = DevIssuer.generate(TOWN_B)
        publish(towns, Topics("sukumo/v1", TOWN_B, "-").bundle("denylist"),
                stranger.denylist_bundle(version=9))
        wait_for(lambda: [e for e in daemon.logged("bundle refused")
                          if e.get("muni") == TOWN_B], 15, "a stranger's denylist refused")
        assert last_tap(daemon, resident_b, 6)["reason"] == "revoked"
    finally:
        daemon.kill()


COUPONS = """
[modes.coupon]
debounce_s = 0
[[modes.coupon.kinds]]
code = "taxi"
rule = "senior"
limit = 2
[[modes.coupon.kinds]]
code = "onsen-b"
rule = "senior"
limit = 1
muni = "392014"
"""


def test_a_coupon_of_town_a_never_grants_a_resident_of_b(
        tmp_path: Path, towns: DevBroker, issuers: tuple[DevIssuer, DevIssuer]) -> None:
    a, b = issuers
    dep = terminal_a(tmp_path, towns, a, b, extra=COUPONS)
    # The mode goes in write_config's own [terminal] table.
    dep.config.write_text(dep.config.read_text().replace(
        'facility = "test-hall"', 'facility = "test-hall"\nmode = "coupon"'))
    senior_b = b.issue_card("MB-0007", bytes.fromhex("0b0b0b0b0b0b0b07"), attr={"senior": True})
    senior_a = a.issue_card("MA-0007", bytes.fromhex("0a0a0a0a0a0a0a07"), attr={"senior": True})
    daemon = DaemonProc(dep).wait_ready()
    try:
        accept_town_b(towns, dep, daemon, version=1)
        # B's resident: A's taxi is never offered; B's hot-spring coupon (B pays) is, once.
        first = last_tap(daemon, senior_b, 1)
        assert (first["result"], first["detail"]["coupon"]) == ("accepted", "onsen-b")
        second = last_tap(daemon, senior_b, 2)
        assert (second["result"], second["reason"]) == ("rejected", "not_eligible")
        assert second["detail"].get("coupon") in (None, "onsen-b")
        # A's resident: A's taxi, twice (its limit); never B's coupon, even then.
        got = [last_tap(daemon, senior_a, n) for n in (3, 4, 5)]
        assert [(t["result"], t["detail"]["coupon"]) for t in got] == [
            ("accepted", "taxi"), ("accepted", "taxi"), ("rejected", "taxi")]
    finally:
        daemon.kill()


def test_the_city_shows_each_town_its_share(
        tmp_path: Path, towns: DevBroker, issuers: tuple[DevIssuer, DevIssuer],
        receivers: list[ReceiverProc]) -> None:  # noqa: F811
    a, b = issuers
    dep = terminal_a(tmp_path, towns, a, b)
    city_db = tmp_path / "city.db"
    receivers.append(ReceiverProc(towns, city_db, tmp_path))
    daemon = DaemonProc(dep).wait_ready()
    try:
        accept_town_b(towns, dep, daemon, version=1)
        last_tap(daemon, b.issue_card("MB-0042", bytes.fromhex("0b0b0b0b0b0b0b42")), 1)
        last_tap(daemon, a.issue_card("MA-0042", bytes.fromhex("0a0a0a0a0a0a0a42")), 2)
        wait_for(lambda: len(receiver_db_ids(city_db)) == 2, 30, "both taps at the city")
    finally:
        daemon.kill()
    import psycopg

    dsn = city_dsn(city_db)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for town in (TOWN_A, TOWN_B):
            conn.execute("SELECT city.add_town(%s)", (town,))
        suffix = tmp_path.name[-12:].replace("-", "_").lower()
        staff = {town: f"staff_{town}_{suffix}" for town in (TOWN_A, TOWN_B)}
        for town, role in staff.items():
            conn.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE town_{town}')
    try:
        def seen(town: str) -> list[tuple[Any, ...]]:
            with psycopg.connect(dsn.replace("user=postgres", f"user={staff[town]}"),
                                 autocommit=True) as conn:
                return conn.execute(
                    "SELECT card_muni, member_id, body::text FROM city.events_v1 "
                    "ORDER BY seq").fetchall()

        in_a = seen(TOWN_A)
        assert [(m, mid) for m, mid, _ in in_a] == [(TOWN_B, None), (TOWN_A, "MA-0042")]
        assert "MB-0042" not in in_a[0][2] and "0b0b0b0b0b0b0b42" not in in_a[0][2]
        assert [(m, mid) for m, mid, _ in seen(TOWN_B)] == [(TOWN_B, "MB-0042")]
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for role in staff.values():
                conn.execute(f'DROP ROLE "{role}"')
