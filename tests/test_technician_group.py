"""Issue 21, item 5: a technician without root. In the service's group (`sukumo`,
docs/technician.md) the read-only commands work as a normal login user; outside it, and
for a command that writes, the message says the `sudo …` to run instead of
"Permission denied".

Real users (`useradd -r`): the service user runs the real daemon with the unit's
UMask=0027 over a terminal provisioned as root, a technician in its group and a stranger
run the real CLI (tests/service_user.py), in Japanese as a technician reads it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import service_user as users
from city_ca import make_ca
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from daemon_env import language_env
from service_user import ServiceUser, as_user, every_module, start_as

from reader.cli import main
from reader.emulator.issuer import DevIssuer

service = users.unprivileged_user  # fixture: the service user
shared_dir = users.shared_dir  # fixture
JA = language_env("ja_JP.UTF-8")
READ_ONLY = [["status"], ["queue", "summary"], ["queue", "list"], ["config", "show"],
             ["readers"], ["doctor"]]
REFUSED = ("Permission denied", "権限がありません", "Traceback")


def _user(name: str, *groups: str) -> Iterator[ServiceUser]:
    extra = ["-G", ",".join(groups)] if groups else []
    subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", *extra, name],
                   check=True)
    info = pwd.getpwnam(name)
    try:
        yield ServiceUser(name, info.pw_uid, info.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def technician(service: ServiceUser) -> Iterator[ServiceUser]:
    yield from _user(f"sukt{os.getpid() % 100000}t", service.name)


@pytest.fixture
def stranger() -> Iterator[ServiceUser]:
    yield from _user(f"sukt{os.getpid() % 100000}s")


def _groups(user: ServiceUser) -> tuple[int, ...]:
    return tuple(g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem)


class Daemon:
    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid

    def stop(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
            self.pid = None


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    running = Daemon(0)
    running.pid = None
    yield running
    running.stop()


@pytest.fixture
def terminal(service: ServiceUser, shared_dir: Path, daemon: Daemon) -> Path:
    """Provisioned as root for `service`; its daemon running as `service` (UMask=0027)."""
    etc, state = shared_dir / "etc", shared_dir / "state"
    assert main(["provision", "--config-dir", str(etc), "--state-dir", str(state), "--user",
                 service.name, "--terminal-id", "t-0001", "--muni", "392081", "--facility",
                 "hall", "--mode", "checkin", "--broker", "", "--transport", "pcsc",
                 "--root-key", DevIssuer.generate().root_public_hex]) == 0
    config = etc / "reader.toml"
    city = make_ca(shared_dir / "city")  # the city CA signs its CSR: a certificate installed
    csr = x509.load_pem_x509_csr((etc / "tls" / "terminal.csr").read_bytes())
    cert = shared_dir / "terminal.crt"
    cert.write_bytes(city.sign(csr.subject, csr.public_key()).public_bytes(
        serialization.Encoding.PEM))
    assert main(["provision", "--config-dir", str(etc), "--user", service.name,
                 "--import-cert", str(cert), "--ca", str(city.path)]) == 0
    every_module()
    daemon.pid = start_as(service, ["--config", str(config), "run"],
                          shared_dir / "daemon.out", env=language_env("C.UTF-8"), umask=0o027)
    deadline = time.monotonic() + 20
    while not (state / "status.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (state / "status.json").exists(), (shared_dir / "daemon.out").read_text()
    return config


def _run(user: ServiceUser, config: Path, argv: list[str], out: Path) -> tuple[int, str]:
    return as_user(user, ["--config", str(config), *argv], out, groups=_groups(user), env=JA)


def test_a_technician_in_the_group_runs_the_read_only_commands_without_root(
        terminal: Path, technician: ServiceUser, service: ServiceUser,
        shared_dir: Path) -> None:
    for argv in READ_ONLY:
        argv = [*argv, "--user", service.name] if argv == ["doctor"] else argv
        code, said = _run(technician, terminal, argv, shared_dir / "out")
        assert code in (0, 1) or (argv == ["readers"] and code == 3), (argv, code, said)
        for refusal in REFUSED:
            assert refusal not in said, (argv, said)
    code, said = _run(technician, terminal, ["status", "--json"], shared_dir / "out")
    assert code == 0 and json.loads(said)["running"], said  # the daemon, read live
    code, said = _run(technician, terminal, ["queue", "summary"], shared_dir / "out")
    assert code == 0 and "送信待ち" in said, said
    # The one check that needs the key (the service's alone) says how to run it.
    code, said = _run(technician, terminal, ["doctor", "--user", service.name],
                      shared_dir / "out")
    assert "`sudo sukumo-reader doctor`" in said and "✓ 端末の鍵" in said, said


def test_the_queue_reads_while_the_daemon_is_stopped(
        terminal: Path, daemon: Daemon, technician: ServiceUser, shared_dir: Path) -> None:
    daemon.stop()
    assert not (shared_dir / "state" / "events.sqlite3-wal").exists()  # nothing to read by
    code, said = _run(technician, terminal, ["queue", "summary"], shared_dir / "out")
    assert code == 0 and "送信待ち" in said, said  # no -shm to create: read as it is
    code, said = _run(technician, terminal, ["status"], shared_dir / "out")
    assert code == 1 and "動いていません" in said, said


def test_outside_the_group_or_writing_the_message_says_sudo(
        terminal: Path, technician: ServiceUser, stranger: ServiceUser,
        shared_dir: Path) -> None:
    code, said = _run(stranger, terminal, ["status"], shared_dir / "out")
    assert code == 3, said
    assert f"sudo sukumo-reader --config {terminal} status" in said, said
    assert "sukumo グループ" in said and "Permission denied" not in said, said
    code, said = _run(technician, terminal, ["queue", "clear-alarms"], shared_dir / "out")
    assert code == 3, said
    assert f"sudo sukumo-reader --config {terminal} queue clear-alarms" in said, said
