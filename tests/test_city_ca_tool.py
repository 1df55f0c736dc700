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
                   "--root-key", root, "--transport", "virtual", "--dev"]) == 0
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
    assert "the city revoked it" in checks["broker"]["detail"], checks["broker"]
    assert "sukumo-city ca sign" in checks["broker"]["advice"]


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


def test_the_development_city_walkthrough_of_the_docs(tmp_path: Path) -> None:
    """docs/city-ca.md, "A development city from a fresh clone", command by command as a
    user types them (subprocesses; free ports instead of 8883/8884)."""
    import subprocess
    import sys

    from waiting import end_process, wait_for

    from reader.devtools.broker import free_port

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SUKUMO_CITY_CA__DIR": str(tmp_path / "dev-city" / "ca")}
    bindir = Path(sys.executable).parent

    def sh(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
        return done.stdout

    city, reader_cmd = str(bindir / "sukumo-city"), str(bindir / "sukumo-reader")
    sh(city, "ca", "init-root", "--root-dir", "dev-city/root")
    sh(city, "ca", "init", "--muni", MUNI, "--root-dir", "dev-city/root")
    sh(city, "ca", "server-cert", "--host", "localhost", "--host", "127.0.0.1",
       "--out", "dev-city/broker-tls")
    sh(city, "ca", "crl")
    port, city_port = free_port(), free_port()
    broker_cmd = [sys.executable, "-m", "reader.devtools.city_broker",
                  "--workdir", "dev-city/broker", "--ca", "dev-city/ca/ca.crt",
                  "--crl", "dev-city/ca/crl.pem",
                  "--server-cert", "dev-city/broker-tls/server.crt",
                  "--server-key", "dev-city/broker-tls/server.key",
                  "--port", str(port), "--city-port", str(city_port)]
    broker_env = {**env, "PYTHONPATH": str(repo)}

    def start_broker() -> subprocess.Popen:
        out = (tmp_path / "broker.out").open("ab")
        proc = subprocess.Popen(broker_cmd, cwd=tmp_path, env=broker_env, stdout=out,
                                stderr=out)
        wait_for(lambda: "terminals:" in (tmp_path / "broker.out").read_text(), 20,
                 "the development broker")
        return proc

    broker = start_broker()
    sync = None
    try:
        root = sh(reader_cmd, "issue-card", "init", "dev-city/issuer")
        root_key = root.split('root_public_key = "')[1].split('"')[0]
        sh(reader_cmd, "provision", "--config-dir", "dev-terminal/etc", "--state-dir",
           "dev-terminal/var", "--user", ME, "--terminal-id", TID, "--muni", MUNI,
           "--facility", "dev-hall", "--mode", "checkin", "--broker",
           f"mqtts://127.0.0.1:{port}", "--root-key", root_key, "--transport", "virtual", "--dev")
        sh(city, "ca", "sign", "dev-terminal/etc/tls/terminal.csr", "--out",
           "dev-city/t-0001.crt")
        sh(reader_cmd, "provision", "--config-dir", "dev-terminal/etc", "--user", ME,
           "--import-cert", "dev-city/t-0001.crt", "--ca", "dev-city/ca/ca.crt")
        config = "dev-terminal/etc/reader.toml"
        report = subprocess.run([reader_cmd, "--config", config, "doctor", "--user", ME,
                                 "--json"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        checks = {c["name"]: c for c in json.loads(report.stdout)["checks"]}
        assert checks["certificate"]["ok"] and checks["broker"]["ok"], checks
        log = (tmp_path / "sync.log").open("ab")
        sync = subprocess.Popen([reader_cmd, "--config", config, "sync"], cwd=tmp_path,
                                env=env, stdout=log, stderr=log)
        wait_for(lambda: "connected to the city broker" in
                 (tmp_path / "sync.log").read_text(), 30, "sync connected")
        # Revoked, the CRL published, the broker started again: never let in.
        sh(city, "ca", "revoke", TID, "--reason", "keyCompromise")
        sh(city, "ca", "crl")
        end_process(broker)
        broker = start_broker()
        wait_for(lambda: "CERTIFICATE_REVOKED" in (tmp_path / "sync.log").read_text(), 30,
                 "the broker refusing the revoked terminal")
    finally:
        if sync is not None:
            end_process(sync)
        end_process(broker)
