"""A real, private PostgreSQL 15 for the city tests, as mqtt_env starts a real mosquitto.

One cluster per test session (`initdb` + `pg_ctl`, Debian's postgresql-15), on a free
loopback port, its unix socket in its own directory, stopped when the session ends; a
fresh database per test (`pg` fixture). The tests run as root and PostgreSQL refuses to
run as root, so the cluster belongs to a system user made with `useradd -r` (kept for
later sessions). Authentication is `trust` on loopback: a test cluster, never a model.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reader.devtools.broker import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "sukumo-pg"


def _pg_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER],
                       check=False, capture_output=True)
        return pwd.getpwnam(PG_USER)


class PgCluster:
    """One initdb'd cluster under a world-traversable temporary directory."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip("postgresql-15 is not installed (scripts/bootstrap.sh installs it)")
        if os.geteuid() != 0:
            pytest.skip("needs root to run PostgreSQL as its own system user")
        self.user = _pg_user()
        self.root = Path(tempfile.mkdtemp(prefix="sukumo-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        for path in (self.data, self.sockets):
            path.mkdir()
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port()
        self.log = self.root / "postgresql.log"
        self.log.touch()
        os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
        self.as_pg([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        self.start()

    def as_pg(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, user=self.user.pw_uid, group=self.user.pw_gid,
                              check=check, capture_output=True, text=True, cwd=self.root,
                              timeout=120)

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # fsync off: the tests restart it cleanly (pg_ctl restart), never pull the plug.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.sockets} -c fsync=off "
                   "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=200")
        return self.as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                           "-w", "-t", "60", "-o", options, *args], check=check)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname} connect_timeout=5"

    def admin(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple]:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, tablespace: str | None = None) -> str:
        where = f" TABLESPACE {tablespace}" if tablespace else ""
        self.admin(f'CREATE DATABASE "{name}"{where}')
        return self.dsn(name)

    def database_exists(self, name: str) -> bool:
        return bool(self.admin("SELECT 1 FROM pg_database WHERE datname = %s", (name,)))

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def tablespace_dir(self, path: Path) -> Path:
        """`path` (a mount point, say) made the PostgreSQL user's, for CREATE TABLESPACE."""
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path


_cluster: PgCluster | None = None


def cluster() -> PgCluster:
    """The session's cluster, started on first use and stopped when the process exits
    (ReceiverProc uses it without a fixture)."""
    global _cluster
    if _cluster is None:
        _cluster = PgCluster()
        atexit.register(_cluster.destroy)
    return _cluster


@dataclass
class PgDatabase:
    cluster: PgCluster
    name: str

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.name)

    def query(self, sql: str, params: Any = None, user: str = "postgres") -> list[tuple]:
        with psycopg.connect(self.cluster.dsn(self.name, user), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="session")
def pg_cluster() -> PgCluster:
    return cluster()


@pytest.fixture
def pg(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    """A fresh, empty database in the session's cluster, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_database(name)
    yield PgDatabase(pg_cluster, name)
    with contextlib.suppress(psycopg.Error):
        pg_cluster.drop_database(name)
