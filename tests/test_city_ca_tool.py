"""`sukumo-city ca` as a new city uses it: a root, an issuing CA, the broker's certificate,
a terminal provisioned with `sukumo-reader provision` and its CSR signed by the tool,
imported, and doctor satisfied — no openssl anywhere. Then what the CA refuses, the
append-only log, revocation and the CRL the broker checks (real mosquitto)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from city.cli import main as city
from reader.cli import main as reader
from reader.devtools.broker import DevBroker
from reader.sync.endpoint import make_csr
from reader.technician.doctor import check_certificate
from reader.technician.provision import set_toml_value

ME = pwd.getpwuid(os.getuid()).pw_name
TID = "t-0001"
MUNI = "392081"


def ca(ca_dir: Path, *args: str) -> int:
    return city(["ca", "--ca-dir", str(ca_dir), *args])


@pytest.fixture(params=[None, "http://ca.city.example/crl.pem"], ids=["crlfile", "crl-url"])
def dev_city(tmp_path: Path, request) -> Iterator[dict[str, Path | DevBroker]]:
    """The documented development city: root, issuing CA, broker certificate, CRL, and a
    broker using them; with and without the CRL's URL in the certificates (EMQX wants it;
    mosquitto must still check its crlfile with the CRL's distribution point in it)."""
    d = tmp_path / "city"
    url = ["--crl-url", request.param] if request.param else []
    assert ca(d / "ca", "init-root", "--root-dir", str(d / "root")) == 0
    assert ca(d / "ca", "init", "--muni", MUNI, "--root-dir", str(d / "root"), *url) == 0
    assert ca(d / "ca", "server-cert", "--host", "127.0.0.1", "--host", "localhost",
              "--out", str(d / "broker-tls")) == 0
    assert ca(d / "ca", "crl") == 0
    broker = DevBroker(d / "broker", terminals=(), terminal_ca=d / "ca" / "ca.crt",
                       server_cert=d / "broker-tls" / "server.crt",
                       server_key=d / "broker-tls" / "server.key",
                       crl_file=d / "ca" / "crl.pem").start()
    yield {"ca": d / "ca", "broker": broker}
    broker.stop()


def provision(tmp_path: Path, broker: DevBroker, tid: str = TID) -> dict[str, Path]:
    etc, var = tmp_path / tid / "etc", tmp_path / tid / "var"
    feed = tmp_path / tid / "feed"
    feed.mkdir(parents=True)
    root = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()
    assert reader(["provision", "--config-dir", str(etc), "--state-dir", str(var),
                   "--user", ME, "--terminal-id", tid, "--muni", MUNI,
                   "--facility", "city-hall", "--mode", "checkin", "--broker", broker.url,
                   "--root-key", root, "--transport", "virtual"]) == 0
    config = etc / "reader.toml"
    config.write_text(set_toml_value(config.read_text(), "reader", "virtual_feed", str(feed))
                      + "\n[sound]\nenabled = false\n")
    return {"etc": etc, "config": config, "csr": etc / "tls" / "terminal.csr"}


def doctor(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    capsys.readouterr()
    reader(["--config", str(config), "doctor", "--user", ME, "--json"])
    return {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_new_city_brings_up_a_terminal_with_the_documented_commands(
        dev_city, tmp_path: Path, capsys) -> None:
    ca_dir, broker = dev_city["ca"], dev_city["broker"]
    t = provision(tmp_path, broker)
    signed = tmp_path / "usb" / "t-0001.crt"
    signed.parent.mkdir()
    assert ca(ca_dir, "sign", str(t["csr"]), "--out", str(signed)) == 0
    cert = x509.load_pem_x509_certificate(signed.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == TID
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == MUNI
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    meta = json.loads((ca_dir / "ca.json").read_text())
    points = [p.full_name[0].value for p in cert.extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value] if meta["crl_url"] else []
    assert points == ([meta["crl_url"]] if meta["crl_url"] else [])
    assert reader(["provision", "--config-dir", str(t["etc"]), "--user", ME,
                   "--import-cert", str(signed), "--ca", str(ca_dir / "ca.crt")]) == 0
    checks = doctor(t["config"], capsys)
    assert checks["certificate"]["ok"], checks["certificate"]
    assert checks["broker"]["ok"], checks["broker"]  # TLS through the root → issuing chain
    # The log has the issuance, and `list` shows it.
    records = [json.loads(line) for line in (ca_dir / "log.jsonl").read_text().splitlines()]
    issued = [r for r in records if r["op"] == "issue"]
    assert [(r["tid"], r["serial"]) for r in issued] == [(TID, f"{cert.serial_number:x}")]
    capsys.readouterr()
    assert ca(ca_dir, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["tid"] == TID and listed[0]["revoked_at"] is None
    assert ca(ca_dir, "sign", str(t["csr"]), "--days", "30", "--out", str(signed)) == 0
    cert = x509.load_pem_x509_certificate(signed.read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


def _csr_file(path: Path, cn: str, muni: str = MUNI, tamper: bool = False) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    der = make_csr(key, cn, muni).public_bytes(serialization.Encoding.DER)
    if tamper:  # one bit of the signed subject flipped: the signature no longer verifies
        at = der.index(cn.encode())
        der = der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:]
    csr = x509.load_der_x509_csr(der)
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(("cn", "muni", "tamper", "says"), [
    (TID, MUNI, True, "signature does not verify"),
    ("T_0001", MUNI, False, "is not a terminal id"),
    (TID, "392082", False, "this CA issues for 392081 only"),
    (TID, "39208", False, "this CA issues for 392081 only"),
])
def test_sign_refuses_bad_csrs_and_records_nothing(tmp_path: Path, capsys, cn, muni, tamper,
                                                   says) -> None:
    ca_dir = tmp_path / "ca"
    assert ca(ca_dir, "init", "--muni", MUNI) == 0
    before = (ca_dir / "log.jsonl").read_bytes()
    csr = _csr_file(tmp_path / "x.csr", cn, muni, tamper)
    capsys.readouterr()
    assert ca(ca_dir, "sign", str(csr)) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "x.crt").exists()
    assert (ca_dir / "log.jsonl").read_bytes() == before


def test_operator_mistakes_exit_2(tmp_path: Path, capsys) -> None:
    ca_dir = tmp_path / "ca"
    assert ca(ca_dir, "list") == 2
    assert "sukumo-city ca init" in capsys.readouterr().err
    assert ca(ca_dir, "init", "--muni", "3920") == 2
    assert ca(ca_dir, "init", "--muni", MUNI) == 0
    assert ca(ca_dir, "init", "--muni", MUNI) == 2  # never replaces a CA (its log)
    assert ca(ca_dir, "sign", str(tmp_path / "missing.csr")) == 2
    (tmp_path / "junk.csr").write_text("hello")
    assert ca(ca_dir, "sign", str(tmp_path / "junk.csr")) == 2
    assert ca(ca_dir, "revoke", "t-9999", "--reason", "keyCompromise") == 2
    err = capsys.readouterr().err
    assert "not a PEM certificate request" in err and "no certificate with that" in err
    assert "Traceback" not in err


def test_revoked_terminal_is_refused_by_the_broker(dev_city, tmp_path: Path, capsys) -> None:
    ca_dir, broker = dev_city["ca"], dev_city["broker"]
    terminals = {}
    for tid in (TID, "t-0002"):
        t = provision(tmp_path, broker, tid)
        assert ca(ca_dir, "sign", str(t["csr"])) == 0
        assert reader(["provision", "--config-dir", str(t["etc"]), "--user", ME,
                       "--import-cert", str(t["csr"].with_suffix(".crt")),
                       "--ca", str(ca_dir / "ca.crt")]) == 0
        terminals[tid] = t
    assert doctor(terminals[TID]["config"], capsys)["broker"]["ok"]
    log_before = (ca_dir / "log.jsonl").read_text()
    assert ca(ca_dir, "revoke", TID, "--reason", "keyCompromise") == 0
    assert ca(ca_dir, "crl") == 0
    # Append-only: everything written before is still there, byte for byte.
    assert (ca_dir / "log.jsonl").read_text().startswith(log_before)
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    serial = x509.load_pem_x509_certificate(
        (terminals[TID]["etc"] / "tls" / "terminal.crt").read_bytes()).serial_number
    revoked = crl.get_revoked_certificate_by_serial_number(serial)
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    assert crl.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    # mosquitto reads its crlfile at start: restart it, as the docs say.
    broker.stop()
    broker.start()
    checks = doctor(terminals[TID]["config"], capsys)
    assert not checks["broker"]["ok"], checks["broker"]
    assert doctor(terminals["t-0002"]["config"], capsys)["broker"]["ok"]
    assert "does not accept our certificate" in checks["broker"]["advice"], checks["broker"]


def test_dev_broker_certificates_pass_doctor(tmp_path: Path) -> None:
    """Development terminals (DevBroker's own CA) are not "expiring" the day they are made."""
    broker = DevBroker(tmp_path / "broker", terminals=(TID,)).ensure_pki()
    ident = broker.identity(TID)
    from reader.config import Settings

    settings = Settings(terminal={"id": TID, "muni": MUNI},
                        mqtt={"url": "mqtts://127.0.0.1:8883", "ca_file": broker.ca_file,
                              "cert_file": ident.cert_file, "key_file": ident.key_file})
    check = check_certificate(settings)
    assert check.ok, check
