"""mqtt-v1 §7 end to end: a terminal whose certificate has 10 days left renews it over
real mosquitto (TLS, the §6 ACL, the city CA's CRL) against the city service, reconnects
with the new pair, and survives SIGKILL at every step of installing it."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
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
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from waiting import wait_for

from city.ca.authority import CertificateAuthority, init_ca
from reader.sync.endpoint import make_csr, tls_context
from reader.sync.pairs import STEPS, Pair, PairStore, load_pair, with_pair_in_force
from reader.technician.doctor import check_certificate
from reader.wire.renewal import build_cert_answer, build_csr_request

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
    settings = city.settings(old, state)
    assert not check_certificate(settings).ok  # doctor: "expires … in 9 days"
    term = Terminal(settings, tmp_path / "sync.log")
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
        # Doctor checks the pair in force: the renewed one.
        check = check_certificate(with_pair_in_force(settings))
        assert check.ok and f"{cert.not_valid_after_utc:%Y-%m-%d}" in check.detail, check
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
    other = terminal_client(city, city.terminal("t-0002"))
    overheard: list[str] = []  # t-0002 listening on every terminal's cert topic
    other.on_message = lambda _c, _u, m: overheard.append(m.topic)
    other.subscribe(f"{PREFIX}/{MUNI}/+/cert", qos=1)
    client = terminal_client(city, mine)
    try:
        from cryptography.hazmat.primitives import serialization

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
        assert info.rc == 0 and info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(1)
    other.disconnect()
    other.loop_stop()
    assert overheard == []  # the ACL: a terminal reads its own cert topic only
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


def test_a_city_that_never_answers_leaves_the_pair_and_raises_the_alarm_once_a_day(
        city: DevCity, watcher: Watcher, tmp_path: Path) -> None:
    old = city.terminal(TID, days_left=10)
    settings = city.settings(old, tmp_path / "state")
    log = tmp_path / "sync.log"
    for _run in range(2):  # a restart does not make it ask again before a day has passed
        term = Terminal(settings, log)
        try:
            wait_for(lambda: watcher.cert_serial(TID) == old.serial, 30, "online, old pair")
            wait_for(lambda: any("renewal has not succeeded: no answer from the city" in a
                                 for a in watcher.status[TID].get("alarms", [])), 30,
                     "the expiry alarm in the status")
            time.sleep(2)
        finally:
            term.stop()
    assert log.read_text().count("asking the city for a new client certificate") == 1


def _wrong_certificate(city: DevCity, rogue: CertificateAuthority, wrong: str,
                       csr: x509.CertificateSigningRequest) -> str:
    """The chain a city must never get a terminal to use."""
    if wrong == "other-ca":
        return rogue.chain_pem(rogue.sign(csr))
    if wrong == "other-key":
        return city.ca.chain_pem(city.ca.sign(
            make_csr(ec.generate_private_key(ec.SECP256R1()), TID, MUNI)))
    if wrong == "expired":
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
        return city.ca.chain_pem(city.ca.sign(csr, days=30, not_before=start))
    assert wrong == "other-subject"  # our key, signed by our CA, named for t-0002
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t-0002"),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, MUNI)]))
            .issuer_name(city.ca.cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365)).sign(city.ca.key, hashes.SHA256()))
    return city.ca.chain_pem(cert)


@pytest.mark.parametrize("wrong", ["other-ca", "other-key", "other-subject", "expired"])
def test_a_certificate_that_is_not_ours_is_refused_and_the_old_pair_kept(
        city: DevCity, watcher: Watcher, tmp_path: Path, wrong: str) -> None:
    """Anyone able to write our cert topic answering with a certificate this terminal must
    not use: another CA's, another key's, another terminal's, an expired one."""
    old = city.terminal(TID, days_left=10)
    rogue = init_ca(tmp_path / "rogue", MUNI)
    receiver = city.broker.receiver
    fake = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="fake")
    fake.tls_set_context(tls_context(city.ca.trust_file, receiver.cert_file,
                                     receiver.key_file))

    def answer(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        req = json.loads(message.payload)
        chain = _wrong_certificate(city, rogue, wrong,
                                   x509.load_pem_x509_csr(req["csr"].encode()))
        fake.publish(f"{PREFIX}/{MUNI}/{TID}/cert", build_cert_answer(req["req"], chain), qos=1)

    fake.on_message = answer
    fake.connect(city.broker.host, city.broker.city_port)
    fake.subscribe(f"{PREFIX}/+/+/csr", qos=1)
    fake.loop_start()
    log = tmp_path / "sync.log"
    term = Terminal(city.settings(old, tmp_path / "state"), log)
    try:
        wait_for(lambda: "certificate from the city refused" in log.read_text(), 30,
                 "the terminal refusing it")
        time.sleep(1)
        assert watcher.cert_serial(TID) == old.serial  # still online, on the old pair
        assert not (tmp_path / "state" / "tls" / "current").exists()
        assert any("renewal has not succeeded" in a for a in watcher.status[TID]["alarms"])
    finally:
        term.stop()
        fake.disconnect()
        fake.loop_stop()


def test_a_renewed_pair_that_cannot_connect_gives_way_to_the_old_one(
        city: DevCity, service: CityService, watcher: Watcher, tmp_path: Path) -> None:
    """§7: the old pair is kept until a connection with the new one succeeds. Here the new
    certificate is revoked before the terminal ever connects with it (killed right after
    putting it in force): the terminal goes back to the old pair and stays online."""
    from city.cli import main as sukumo_city

    old = city.terminal(TID, days_left=10)
    settings = city.settings(old, tmp_path / "state")
    first = Terminal(settings, tmp_path / "sync.log", crash_at="switched")
    assert first.proc.wait(60) == -9
    new_serial = city.issued(TID)[-1]
    ca = ["ca", "--ca-dir", str(city.ca.ca_dir)]
    assert sukumo_city([*ca, "revoke", new_serial, "--reason", "keyCompromise"]) == 0
    assert sukumo_city([*ca, "crl"]) == 0
    answering = service.answering()
    city.broker.stop()
    city.broker.start()
    # The city's responder first: a request published while it is not yet subscribed again
    # is dropped by the broker, and the terminal asks again only a day later (§7).
    wait_for(lambda: service.answering() > answering, 60, "the city answering again")
    again = Terminal(settings, tmp_path / "sync.log")
    try:
        wait_for(lambda: watcher.cert_serial(TID) == old.serial, 60, "online on the old pair")
        assert "back to the pair before it" in (tmp_path / "sync.log").read_text()
        assert not (tmp_path / "state" / "tls" / "current").exists()
        assert not (tmp_path / "state" / "tls" / "pairs" / new_serial).exists()
        # It asks again; the city refuses: the terminal's newest certificate is revoked.
        wait_for(lambda: "error': 'revoked'" in (tmp_path / "sync.log").read_text()
                 or '"error": "revoked"' in (tmp_path / "sync.log").read_text(), 30,
                 "the city's refusal")
    finally:
        again.stop()
