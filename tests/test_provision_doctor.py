"""provision → (city CA signs) → import → doctor, in a temp root, against a real broker.

The city CA, the broker's certificate and a TLS mosquitto (client certificates required)
are made here; the CLI runs in-process through `reader.cli.main`. Each broken terminal
(wrong certificate, world-readable key, missing reader, unreachable broker) must get
its ✗ and the advice a technician can act on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from city_ca import CityCA, make_ca
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reader.cli import main
from reader.config import load_settings
from reader.errors import ConfigError
from reader.technician import doctor
from reader.technician.provision import (
    certificate_problem,
    import_certificate,
    load_private_key,
    set_toml_value,
)

ME = pwd.getpwuid(os.getuid()).pw_name  # stands in for the `sukumo` service user
TID = "t-test-0001"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> CityCA:
    return make_ca(tmp_path_factory.mktemp("city"))


@pytest.fixture(scope="module")
def broker(city: CityCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """mosquitto on a free loopback port: TLS, the city CA, client certificates required."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto not installed (apt install mosquitto)")
    folder = tmp_path_factory.mktemp("broker")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = city.sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
                     key.public_key(), san=[x509.DNSName("localhost"),
                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (folder / "server.crt").write_bytes(_pem(cert))
    (folder / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {city.path}\ncertfile {folder / 'server.crt'}\n"
        f"keyfile {folder / 'server.key'}\nrequire_certificate true\n"
        "use_identity_as_username true\nallow_anonymous false\npersistence false\n"
        "log_dest stderr\n" + ("user root\n" if os.getuid() == 0 else ""))
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                             str(conf)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture
def terminal(tmp_path: Path, city: CityCA, broker: int) -> dict[str, Path]:
    """A terminal provisioned through the CLI, its CSR signed by the city, cert imported."""
    etc, var = tmp_path / "etc" / "sukumo-reader", tmp_path / "var" / "sukumo-reader"
    feed = tmp_path / "feed"
    feed.mkdir()
    root = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()
    code = main(["provision", "--config-dir", str(etc), "--state-dir", str(var),
                 "--user", ME, "--terminal-id", TID, "--muni", "392081",
                 "--facility", "city-hall", "--mode", "checkin",
                 "--broker", f"mqtts://localhost:{broker}", "--root-key", root,
                 "--transport", "virtual"])
    assert code == 0
    # What the unit's ConditionPathExists= waits for (systemd/sukumo-reader.service).
    assert (etc / "provisioned").read_text() == f"{TID} 392081\n"
    config = etc / "reader.toml"
    # The virtual reader (on purpose, with its feed) and no speaker: what this machine has.
    text = set_toml_value(config.read_text(), "reader", "virtual_feed", str(feed))
    config.write_text(text + '\n[sound]\nenabled = false\n')
    csr = x509.load_pem_x509_csr((etc / "tls" / "terminal.csr").read_bytes())
    assert csr.subject.rfc4514_string() == f"O=392081,CN={TID}"
    signed = tmp_path / "usb" / "terminal.crt"
    signed.parent.mkdir()
    signed.write_bytes(_pem(city.sign(csr.subject, csr.public_key())))
    assert main(["provision", "--config-dir", str(etc), "--user", ME,
                 "--import-cert", str(signed), "--ca", str(city.path)]) == 0
    return {"config": config, "etc": etc, "state": var, "feed": feed}


def _doctor(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict]]:
    capsys.readouterr()
    code = main(["--config", str(config), "doctor", "--user", ME, "--json"])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


def test_provisioned_terminal_passes_its_checks(terminal, capsys) -> None:
    settings = load_settings(terminal["config"])
    key = settings.mqtt.key_file
    assert key is not None and (key.stat().st_mode & 0o777) == 0o600
    assert (terminal["state"].stat().st_mode & 0o777) == 0o750
    assert settings.verify.root_public_key.startswith("04")
    assert key.read_bytes() not in capsys.readouterr().out.encode()  # never printed
    _, checks = _doctor(terminal["config"], capsys)
    for name in ("config", "terminal key", "certificate", "reader", "audio", "broker", "disk",
                 "queue"):
        assert checks[name]["ok"], checks[name]
    assert "broker accepted us" in checks["broker"]["detail"]
    # No bundles yet: the technician is told where they come from.
    assert not checks["bundles"]["ok"]
    assert "bundle import" in checks["bundles"]["advice"]


def test_provision_again_keeps_the_key(terminal, capsys) -> None:
    before = (terminal["etc"] / "tls" / "terminal.key").read_bytes()
    root = load_settings(terminal["config"]).verify.root_public_key
    assert main(["provision", "--config-dir", str(terminal["etc"]), "--user", ME,
                 "--terminal-id", TID, "--muni", "392081", "--facility", "library",
                 "--mode", "event", "--broker", "", "--root-key", root, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["key_created"] is False
    assert (terminal["etc"] / "tls" / "terminal.key").read_bytes() == before
    settings = load_settings(terminal["config"])
    assert (settings.terminal.facility, settings.terminal.mode) == ("library", "event")
    assert settings.reader.virtual_feed == terminal["feed"]  # other edits survive


def test_wrong_certificate(terminal, city, capsys) -> None:
    # The USB stick held another terminal's certificate, copied in by hand.
    other = ec.generate_private_key(ec.SECP256R1())
    wrong = city.sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TID)]),
                      other.public_key())
    (terminal["etc"] / "tls" / "terminal.crt").write_bytes(_pem(wrong))
    code, checks = _doctor(terminal["config"], capsys)
    assert code == 1
    assert not checks["certificate"]["ok"]
    assert "not for this terminal's key" in checks["certificate"]["detail"]
    assert "provision --import-cert" in checks["certificate"]["advice"]
    assert not checks["broker"]["ok"]
    # And the importer refuses it in the first place.
    path = terminal["etc"].parent / "wrong.crt"
    path.write_bytes(_pem(wrong))
    with pytest.raises(ConfigError, match="not for this terminal's key"):
        import_certificate(terminal["etc"], path, city.path, ME)


def test_certificate_from_another_ca_or_expiring(terminal, tmp_path) -> None:
    settings = load_settings(terminal["config"])
    key = load_private_key(settings.mqtt.key_file)
    rogue = make_ca(tmp_path / "rogue", "Not the city")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TID)])
    city_ca = x509.load_pem_x509_certificate(settings.mqtt.ca_file.read_bytes())
    assert "not signed by the given CA" in certificate_problem(
        rogue.sign(name, key.public_key()), key, city_ca, TID)
    soon = tmp_path / "soon.crt"
    soon.write_bytes(_pem(CityCA(key=rogue.key, cert=rogue.cert, path=rogue.path)
                          .sign(name, key.public_key(), days=10)))
    check = doctor.check_certificate(settings.model_copy(update={
        "mqtt": settings.mqtt.model_copy(update={"cert_file": soon,
                                                 "ca_file": rogue.path})}))
    assert not check.ok and "in 9 days" in check.detail and "new certificate" in check.advice


def test_key_readable_by_everyone(terminal, capsys) -> None:
    key = terminal["etc"] / "tls" / "terminal.key"
    key.chmod(0o644)
    code, checks = _doctor(terminal["config"], capsys)
    assert code == 1
    assert not checks["terminal key"]["ok"]
    assert "mode 0644" in checks["terminal key"]["detail"]
    assert f"chmod 0600 {key}" in checks["terminal key"]["advice"]


def test_missing_reader(terminal, capsys) -> None:
    terminal["feed"].rmdir()  # the virtual reader's "USB cable"
    code, checks = _doctor(terminal["config"], capsys)
    assert code == 1
    assert not checks["reader"]["ok"]
    assert "does not exist" in checks["reader"]["detail"]
    assert "virtual_feed" in checks["reader"]["advice"]


def test_unreachable_broker(terminal, capsys) -> None:
    config = terminal["config"]
    closed_port = _free_port()  # nothing listens there
    config.write_text(config.read_text().replace(
        "url = \"mqtts://localhost:", f"url = \"mqtts://127.0.0.1:{closed_port}#"))
    code, checks = _doctor(config, capsys)
    assert code == 1
    broker = checks["broker"]
    assert not broker["ok"]
    assert f"cannot reach the broker at 127.0.0.1:{closed_port}" in broker["detail"]
    assert "check the network" in broker["advice"] and "[mqtt] url" in broker["advice"]


def test_text_report_has_a_line_per_check_and_advice(terminal, capsys) -> None:
    (terminal["etc"] / "tls" / "terminal.key").chmod(0o644)
    capsys.readouterr()
    assert main(["--config", str(terminal["config"]), "doctor", "--user", ME]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("✓ config") for line in out)
    key_line = next(i for i, line in enumerate(out) if line.startswith("✗ terminal key"))
    assert "→ the private key must be readable only by the service" in out[key_line + 1]


def test_scripted_provision_without_a_terminal_names_missing_flags(tmp_path, capsys) -> None:
    code = main(["provision", "--config-dir", str(tmp_path), "--terminal-id", TID])
    assert code == 2
    err = capsys.readouterr().err
    assert "--muni" in err and "--root-key" in err
    assert not (tmp_path / "reader.toml").exists()


def test_invalid_values_leave_no_config(tmp_path, capsys) -> None:
    args = ["provision", "--config-dir", str(tmp_path), "--no-chown", "--terminal-id", TID,
            "--muni", "392081", "--facility", "f", "--broker", ""]
    root = "04" + "00" * 64  # not a point on P-256
    assert main([*args, "--mode", "checkin", "--root-key", root]) == 2
    assert "not a valid P-256 point" in capsys.readouterr().err
    good_root = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()
    assert main([*args, "--mode", "parking", "--root-key", good_root]) == 2
    assert "terminal.mode" in capsys.readouterr().err
    assert not (tmp_path / "reader.toml").exists()
    assert not (tmp_path / "tls" / "terminal.key").exists()


def _status(pid: int, age_s: float) -> dict:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)).isoformat()
    return {"pid": pid, "started_at": at, "updated_at": at, "mode": "checkin",
            "reader": "ok", "audio": "disabled",
            "last_tap": {"at": at, "result": "rejected", "reason": "denylisted", "mid": "m-1"},
            "queue": {"pending": 3, "in_flight": 1, "rejected": 0, "oldest_at": at,
                      "last_seq": 42, "db_bytes": 40960, "over_warn": False},
            "sync": {"state": "online", "last_ack_at": at},
            "versions": {"app": "0.1.0", "trust": 3, "denylist": 41, "config": 7},
            "alarms": []}


@pytest.mark.parametrize(("pid", "age", "running", "why"), [
    (os.getpid(), 1, True, "running"),
    (os.getpid(), 60, False, "old (wedged?)"),
    (2**22 + 12345, 1, False, "is not running"),  # above pid_max: never alive
])
def test_status_says_whether_the_daemon_runs(terminal, capsys, pid, age, running, why) -> None:
    (terminal["state"] / "status.json").write_text(json.dumps(_status(pid, age)))
    capsys.readouterr()
    code = main(["--config", str(terminal["config"]), "status"])
    text = capsys.readouterr().out
    assert code == (0 if running else 1)
    assert why in text.splitlines()[0]
    assert "3 pending, 1 in flight" in text and "denylisted" in text and "trust 3" in text
    assert main(["--config", str(terminal["config"]), "status", "--json"]) == code
    out = json.loads(capsys.readouterr().out)
    assert out["running"] is running and out["status"]["queue"]["last_seq"] == 42


def test_status_without_a_daemon(terminal, capsys) -> None:
    assert main(["--config", str(terminal["config"]), "status"]) == 1
    assert "has not run here" in capsys.readouterr().out


def test_config_show_sources_and_redaction(terminal, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SUKUMO_READER_LOG__LEVEL", "DEBUG")
    monkeypatch.setenv("SUKUMO_READER_MQTT__URL", "mqtts://tid:s3cret@localhost:8883")
    capsys.readouterr()
    assert main(["--config", str(terminal["config"]), "config", "show", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["terminal.id"] == {"key": "terminal.id", "value": TID,
                                   "source": f"file {terminal['config']}"}
    assert rows["log.level"]["source"] == "environment SUKUMO_READER_LOG__LEVEL"
    assert rows["queue.warn_mb"]["source"] == "default"
    assert rows["mqtt.url"]["value"] == "mqtts://tid:<redacted>@localhost:8883"
    assert rows["mqtt.key_file"]["value"].endswith("terminal.key")  # the path, not the key
    assert main(["--config", str(terminal["config"]), "config", "show"]) == 0
    text = capsys.readouterr().out
    assert "s3cret" not in text and "PRIVATE KEY" not in text
