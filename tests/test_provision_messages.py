"""`provision` as a technician meets it: each mistake named with the next step, answers
checked as they are given, and no advice that does not apply (a real `sukumo-reader
provision` process; a pseudo-terminal where it asks questions)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from city_ca import make_ca
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from daemon_env import REPO, run_cli

ROOT = ("04fbd0ea5bd96b8586f096b43c0753748e9aea493ce75ea2e1a86b572a15d3aa3a3c96371a3a3f5b91"
        "ddcfb18ffcc8e91652cbdfa0ec44d966e80bac6bca0ce8f2")  # the vectors' test root


def _provision(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("provision", "--config-dir", str(tmp / "etc"), "--state-dir",
                   str(tmp / "state"), "--no-chown", "--terminal-id", "t-0001", "--muni",
                   "392081", "--facility", "hall", "--mode", "checkin", "--root-key", ROOT,
                   "--transport", "virtual", "--dev", "--broker", "", *extra)


def _sign(tmp: Path, days: int) -> tuple[Path, Path]:
    """The city CA signs the terminal's CSR: (certificate, CA certificate) files."""
    city = make_ca(tmp / "city")
    csr = x509.load_pem_x509_csr((tmp / "etc" / "tls" / "terminal.csr").read_bytes())
    cert_file = tmp / "terminal.crt"
    cert_file.write_bytes(city.sign(csr.subject, csr.public_key(), days=days)
                          .public_bytes(serialization.Encoding.PEM))
    return cert_file, city.path


def test_a_broker_that_is_no_broker_is_refused_at_provision(tmp_path: Path) -> None:
    done = _provision(tmp_path, "--broker", "http://x")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "mqtts://HOST:8883" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "etc" / "reader.toml").exists()  # nothing half-written


def test_a_certificate_near_its_end_is_installed_with_a_warning(tmp_path: Path) -> None:
    assert _provision(tmp_path).returncode == 0
    cert, ca = _sign(tmp_path, days=10)
    done = run_cli("provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                   "--import-cert", str(cert), "--ca", str(ca))
    assert done.returncode == 0, done.stderr
    assert "expires in 9 day(s)" in done.stderr or "expires in 10 day(s)" in done.stderr
    assert "renewal" in done.stderr


def test_provisioning_again_with_a_valid_certificate_asks_for_no_csr(tmp_path: Path) -> None:
    first = _provision(tmp_path)
    assert "Next: send" in first.stdout  # no certificate yet: the CSR goes to the city CA
    cert, ca = _sign(tmp_path, days=365)
    assert run_cli("provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                   "--import-cert", str(cert), "--ca", str(ca)).returncode == 0
    again = _provision(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to send to the city CA" in again.stdout and "Next: send" not in again.stdout


def test_a_garbage_certificate_is_named_without_a_parser_dump(tmp_path: Path) -> None:
    assert _provision(tmp_path).returncode == 0
    _, ca = _sign(tmp_path, days=365)
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(os.urandom(40))
    done = run_cli("provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                   "--import-cert", str(garbage), "--ca", str(ca))
    assert done.returncode == 2
    assert "is not an X.509 certificate" in done.stderr and "ParseError" not in done.stderr


def answered(argv: list[str], answers: list[str], env: dict[str, str] | None = None
             ) -> tuple[int, str]:
    """`sukumo-reader ARGV` in a pseudo-terminal, each question (a line ending in ":")
    given the next answer: (exit code, the screen)."""
    master, slave = pty.openpty()
    env = env or {k: v for k, v in os.environ.items() if not k.startswith("SUKUMO_READER_")}
    env.setdefault("LANG", "C.UTF-8")
    proc = subprocess.Popen([sys.executable, "-m", "reader", *argv], stdin=slave,
                            stdout=slave, stderr=slave, cwd=REPO, env=env)
    os.close(slave)
    answers = list(answers)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while answers and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            screen += os.read(master, 4096)
            if screen.rstrip().endswith(b":"):  # a question waits for its answer
                os.write(master, answers.pop(0).encode() + b"\n")
                screen += b"\n"
        code = proc.wait(60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                screen += os.read(master, 4096)
            except OSError:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, screen.decode(errors="replace")


def test_a_wrong_answer_is_asked_again_and_keeps_the_earlier_ones(tmp_path: Path) -> None:
    answers = ["t-0001", "39208", "392081", "hall", "checkin", "", ROOT]  # a 5-digit muni
    code, text = answered(["provision", "--config-dir", str(tmp_path / "etc"), "--state-dir",
                           str(tmp_path / "state"), "--no-chown", "--transport", "virtual",
                           "--dev"], answers)
    assert code == 0, text
    assert "not accepted" in text  # the 5-digit municipality code, asked again
    config = (tmp_path / "etc" / "reader.toml").read_text()
    assert 'id = "t-0001"' in config and 'muni = "392081"' in config  # nothing lost
