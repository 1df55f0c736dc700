"""A real, throw-away PostgreSQL 15 on loopback for the tests, the demo and benchmarks, as
reader/devtools/broker.py is mosquitto's: `initdb` + `pg_ctl` of Debian's postgresql-15,
a free loopback port, its unix socket in its own directory.

PostgreSQL refuses to run as root, so when started by root the cluster belongs to a
system user made with `useradd -r` (kept for later runs). Authentication is `trust` on
loopback and fsync is off (nothing here survives a power cut, nor needs to): a test
cluster, never a model for a city's database (docs/city.md says how to run that).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "sukumo-pg"


class DevPgError(RuntimeError):
    """This machine cannot run a development PostgreSQL (not installed, or not root)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _owner() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER],
                       check=False, capture_output=True)
        return pwd.getpwnam(PG_USER)


class DevPostgres:
    """One initdb'd cluster under a temporary directory; `start()` / `stop()` / `destroy()`."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise DevPgError("postgresql-15 is not installed (scripts/bootstrap.sh installs it)")
        self.user = _owner()
        # In the system's temporary directory: the cluster's owner must be able to reach
        # it, which a caller's private (0700) directory would not let it.
        self.root = Path(tempfile.mkdtemp(prefix="sukumo-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgresql.log"
        for path in (self.data, self.sockets):
            path.mkdir()
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.log.touch()
        os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
        self.port = _free_port()
        self._as_owner([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])

    def _as_owner(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, user=self.user.pw_uid, group=self.user.pw_gid,
                              check=check, capture_output=True, text=True, cwd=self.root,
                              timeout=120)

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.sockets} -c fsync=off "
                   "-c full_page_writes=off -c shared_buffers=64MB -c max_connections=200")
        return self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                               str(self.log), "-w", "-t", "60", "-o", options, *args],
                              check=check)

    def start(self) -> DevPostgres:
        self._ctl("start")
        return self

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname} connect_timeout=5"

    def admin(self, sql: str, params: Any = None,
              dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}"')
        return self.dsn(name)
