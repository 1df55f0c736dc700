"""The city's answer to a certificate request (mqtt-v1 §7), rule by rule, on a real CA
directory and its log: what `sukumo-city run` publishes on the terminal's `cert` topic."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from city.ca.authority import CertificateAuthority, init_ca
from city.ca.renewal import answer, reply
from reader.sync.endpoint import make_csr
from reader.wire.renewal import build_csr_request, parse_cert_answer

MUNI, TID = "392081", "t-0001"


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return init_ca(tmp_path / "ca", MUNI)


def issue(ca: CertificateAuthority, tid: str = TID, days: int = 365,
          age_days: float = 300) -> x509.Certificate:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    return ca.sign(make_csr(ec.generate_private_key(ec.SECP256R1()), tid, MUNI), days=days,
                   not_before=start)


def request(cn: str = TID, muni: str = MUNI, tid: str = TID, req: str = "r-1") -> bytes:
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), cn, muni)
    return build_csr_request(tid, req, csr.public_bytes(serialization.Encoding.PEM).decode())


def test_signs_a_good_request_once_per_req(ca: CertificateAuthority) -> None:
    old = issue(ca)
    first = parse_cert_answer(answer(ca, MUNI, TID, request()) or b"")
    assert first.error is None and first.chain
    cert = x509.load_pem_x509_certificates(first.chain.encode())[0]
    assert cert.serial_number != old.serial_number
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)
    # QoS 1 redelivers, or the answer was lost: the same request gets the same certificate.
    again = parse_cert_answer(answer(ca, MUNI, TID, request()) or b"")
    assert again.chain == first.chain
    assert [c.tid for c in ca.log.issued()] == [TID, TID]
    record = [json.loads(line) for line in ca.log.path.read_text().splitlines()][-1]
    assert record["req"] == "r-1" and record["by"] == f"renewal:{TID}"


@pytest.mark.parametrize(("payload", "code"), [
    (request(cn="t-0002"), "subject"),  # the CSR names another terminal
    (request(tid="t-0002"), "subject"),  # the request claims another terminal
    (request(muni="392082"), "subject"),  # another town's subject
    (b'{"v": 1, "tid": "t-0001", "req": "r-1", "csr": "not a CSR"}', "policy"),
    (b'{"v": 2, "tid": "t-0001", "req": "r-1", "csr": ""}', "policy"),
])
def test_refusals(ca: CertificateAuthority, payload: bytes, code: str) -> None:
    issue(ca)
    out = parse_cert_answer(answer(ca, MUNI, TID, payload) or b"")
    assert (out.req, out.error, out.chain) == ("r-1", code, None)
    assert len(ca.log.issued()) == 1  # nothing signed


def test_revoked_expired_unknown_and_too_soon(ca: CertificateAuthority) -> None:
    assert parse_cert_answer(answer(ca, MUNI, TID, request()) or b"").error == "policy"
    issue(ca, days=30, age_days=31)  # expired
    assert parse_cert_answer(answer(ca, MUNI, TID, request()) or b"").error == "policy"
    current = issue(ca)
    ca.revoke(f"{current.serial_number:x}", "keyCompromise")
    assert parse_cert_answer(answer(ca, MUNI, TID, request()) or b"").error == "revoked"
    ca.sign(make_csr(ec.generate_private_key(ec.SECP256R1()), TID, MUNI))  # just now
    busy = parse_cert_answer(answer(ca, MUNI, TID, request()) or b"")
    assert busy.error == "busy" and busy.retry_after_s is not None
    assert 3000 < busy.retry_after_s <= 3600
    # Another town's terminal, on this town's CA: not ours to sign.
    assert parse_cert_answer(answer(ca, "392082", TID, request(muni="392082")) or b""
                             ).error == "policy"


def test_busy_while_another_signing_holds_the_ca(ca: CertificateAuthority) -> None:
    issue(ca)
    with ca.log.locked():
        out = parse_cert_answer(answer(ca, MUNI, TID, request()) or b"")
    assert (out.error, out.retry_after_s) == ("busy", 60)


def test_answered_on_the_asking_terminals_own_topic_only(ca: CertificateAuthority) -> None:
    issue(ca)
    topic, _payload = reply(ca, "sukumo/v1", f"sukumo/v1/{MUNI}/{TID}/csr", request()) or ("", b"")
    assert topic == f"sukumo/v1/{MUNI}/{TID}/cert"
    assert reply(ca, "sukumo/v1", f"sukumo/v1/{MUNI}/{TID}/events", request()) is None
    assert answer(ca, MUNI, TID, b"not json") is None  # no req: nothing to answer to
