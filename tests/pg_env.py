"""A real, private PostgreSQL 15 for the city tests, as mqtt_env starts a real mosquitto.

One cluster per test session (reader/devtools/postgres.py: `initdb` + `pg_ctl`, Debian's
postgresql-15, a free loopback port, its unix socket in its own directory), stopped when
the session ends; a fresh database per test (`pg` fixture). The tests run as root and
PostgreSQL refuses to run as root, so the cluster belongs to a system user made with
`useradd -r` (kept for later sessions). Authentication is `trust` on loopback.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reader.devtools.postgres import DevPostgres, available


class PgCluster(DevPostgres):
    """The session's cluster (reader/devtools/postgres.py) with what tests ask of it."""

    @property
    def root(self) -> Path:
        return self.workdir

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
        """`path` (a mount point, say) made PostgreSQL's, for CREATE TABLESPACE."""
        return self.own(path)


_cluster: PgCluster | None = None


def cluster() -> PgCluster:
    """The session's cluster, started on first use and stopped when the process exits
    (ReceiverProc uses it without a fixture)."""
    global _cluster
    if _cluster is None:
        if not available():
            pytest.skip("postgresql-15 is not installed (scripts/bootstrap.sh installs it)")
        if os.geteuid() != 0:
            pytest.skip("needs root to run PostgreSQL as its own system user")
        root = Path(tempfile.mkdtemp(prefix="sukumo-pg-"))
        _cluster = PgCluster(root)
        _cluster.start()
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
