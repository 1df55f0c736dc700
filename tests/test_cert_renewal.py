"""mqtt-v1 §7 end to end: a terminal whose certificate has 10 days left renews it over
real mosquitto (TLS, the §6 ACL, the city CA's CRL) against the city service, reconnects
with the new pair, and survives SIGKILL at every step of installing it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ca_env import (
    MUNI,
    PREFIX,
    CityService,
    DevCity,
    Terminal,
    Watcher,
    load_cert,
    terminal_client,
)
from waiting import wait_for

from reader.sync.endpoint import make_csr
from reader.sync.pairs import STEPS, Pair, PairStore, load_pair
from reader.wire.renewal import build_csr_request

pytestmark = pytest.mark.mqtt
TID = "t-0001"


@pytest.fixture
def city(tmp_path: Path) -> Iterator[DevCity]:
    c = DevCity(tmp_path / "city")
    c.broker.start()
    yield c
    c.broker.stop()


@pytest.fixture
def service(city: DevCity, tmp_path: Path) -> Iterator[CityService]:
    s = CityService(city, tmp_path)
    yield s
    s.stop()


@pytest.fixture
def watcher(city: DevCity) -> Iterator[Watcher]:
    w = Watcher(city)
    yield w
    w.close()


def in_force(state: Path, pair_cfg: Pair) -> Pair:
    """The pair the terminal would use now, and that it is complete."""
    pair = PairStore(state / "tls", pair_cfg).active()
    assert load_pair(pair) is not None, f"incomplete pair in force: {pair}"
    return pair


def test_renews_with_ten_days_left_and_reconnects_with_the_new_pair(
        city: DevCity, service: CityService, watcher: Watcher, tmp_path: Path) -> None:
    old = city.terminal(TID, days_left=10)
    state = tmp_path / "state"
    term = Terminal(city.settings(old, state), tmp_path / "sync.log")
    try:
        wait_for(lambda: len(city.issued(TID)) == 2, 30, "the city issued a new certificate")
        new_serial = city.issued(TID)[-1]
        assert new_serial != old.serial
        # The broker's retained status says the link now runs on the new certificate.
        wait_for(lambda: watcher.cert_serial(TID) == new_serial, 30,
                 "status with the new certificate's serial")
        pair = in_force(state, Pair(old.cert_file, old.key_file))
        cert = load_cert(pair.cert_file)
        assert f"{cert.serial_number:x}" == new_serial
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 364
        assert pair.key_file.stat().st_mode & 0o777 == 0o600
        assert load_pair(Pair(old.cert_file, old.key_file)) is not None  # provisioned kept
        status = watcher.status[TID]
        assert status["cert"]["not_after"].startswith(f"{cert.not_valid_after_utc:%Y-%m-%d}")
        assert not any("certificate" in a for a in status["alarms"])
        # The fleet view sees the new expiry (status.cert, mqtt-v1 §7).
        expiry = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        wait_for(lambda: ((service.fleet(TID) or {}).get("cert_not_after") or "").startswith(
            expiry), 30, f"the fleet view's cert_not_after {expiry}")
        time.sleep(3)  # three more status turns, where a renewal would be asked
    finally:
        term.stop()
    assert len(city.issued(TID)) == 2  # once: a renewed terminal does not ask again
    log = (tmp_path / "sync.log").read_text()
    assert log.count("asking the city for a new client certificate") == 1
    assert "new client certificate installed" in log
    assert "BEGIN" not in log and "PRIVATE" not in log  # no key or certificate in the log


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_step_restarts_with_one_complete_pair(
        city: DevCity, service: CityService, watcher: Watcher, tmp_path: Path,
        step: str) -> None:
    old = city.terminal(TID, days_left=10)
    state = tmp_path / "state"
    settings = city.settings(old, state)
    first = Terminal(settings, tmp_path / "sync.log", crash_at=step)
    assert first.proc.wait(60) == -9, f"not killed at step {step}"
    # Whatever the step, one complete pair is in force and the terminal connects with it.
    pair = in_force(state, Pair(old.cert_file, old.key_file))
    again = Terminal(settings, tmp_path / "sync.log")
    try:
        wait_for(lambda: watcher.cert_serial(TID) is not None, 30, "terminal online again")
        issued = city.issued(TID)
        # Killed before its request left: it keeps the old pair (and asks a day later);
        # once the city answered, the answer (redelivered from the session) is installed.
        want = old.serial if step == "asked" else issued[-1]
        wait_for(lambda: watcher.cert_serial(TID) == want, 30, f"online with {want}")
        pair = in_force(state, Pair(old.cert_file, old.key_file))
        assert f"{load_cert(pair.cert_file).serial_number:x}" == want
        assert len(issued) == (1 if step == "asked" else 2)
        pairs_dir = state / "tls" / "pairs"
        leftovers = [p.name for p in pairs_dir.iterdir()] if pairs_dir.is_dir() else []
        assert all(not n.startswith(".") for n in leftovers)  # no half-written pair
    finally:
        again.stop()


def test_csr_for_another_terminal_is_refused_with_subject(
        city: DevCity, service: CityService, watcher: Watcher) -> None:
    mine = city.terminal(TID)
    city.terminal("t-0002")
    client = terminal_client(city, mine)
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        csr = make_csr(key, "t-0002", MUNI).public_bytes(serialization.Encoding.PEM).decode()
        client.subscribe(f"{PREFIX}/{MUNI}/{TID}/cert", qos=1)
        got: list[dict] = []
        client.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
        client.publish(f"{PREFIX}/{MUNI}/{TID}/csr",
                       build_csr_request(TID, "req-1", csr), qos=1).wait_for_publish(5)
        wait_for(lambda: got, 15, "the city's answer")
        assert got == [{"v": 1, "req": "req-1", "error": "subject"}]
        # On t-0002's own topic the broker refuses the publish (§6): no answer at all.
        info = client.publish(f"{PREFIX}/{MUNI}/t-0002/csr",
                              build_csr_request("t-0002", "req-2", csr), qos=1)
        info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(1)
    assert len(city.issued("t-0002")) == 1  # nothing signed for t-0002
    assert len(city.issued(TID)) == 1  # nor for t-0001
    assert "certificate request refused: subject is another terminal's" in \
        service.log.read_text()


def test_revoked_terminal_is_refused_by_the_broker_and_offline_in_the_fleet_view(
        city: DevCity, service: CityService, tmp_path: Path) -> None:
    from city.cli import main as sukumo_city

    pairs = {tid: city.terminal(tid) for tid in (TID, "t-0002")}
    terms = {tid: Terminal(city.settings(p, tmp_path / tid), tmp_path / f"{tid}.log")
             for tid, p in pairs.items()}
    try:
        for tid in pairs:
            wait_for(lambda t=tid: (service.fleet(t) or {}).get("online"), 30, f"{tid} online")
        ca = ["ca", "--ca-dir", str(city.ca.ca_dir)]
        assert sukumo_city([*ca, "revoke", TID, "--reason", "keyCompromise"]) == 0
        assert sukumo_city([*ca, "crl"]) == 0
        # The broker reads its crlfile at start (and on SIGHUP): restart it.
        city.broker.stop()
        city.broker.start()
        # The broker ends t-0001's handshakes with TLS alert "certificate revoked".
        wait_for(lambda: "CERTIFICATE_REVOKED" in terms[TID].log.read_text(), 30,
                 "the broker refusing t-0001's certificate")
        wait_for(lambda: (service.fleet(TID) or {}).get("online") is False, 30,
                 "t-0001 offline in the fleet view")
        wait_for(lambda: (service.fleet("t-0002") or {}).get("online"), 30, "t-0002 back")
        time.sleep(2)  # t-0001 keeps trying (backoff ≤ 1 s): never let in
        assert service.fleet(TID)["online"] is False
        assert "u't-0001'" not in city.broker.log_file.read_text().split(
            "mosquitto version")[-1]  # no connection of t-0001 since the restart
    finally:
        for term in terms.values():
            term.stop()
