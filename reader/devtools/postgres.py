"""A real, throw-away PostgreSQL on loopback for tests, the demo and benchmarks, as
DevBroker is for mosquitto: the city service (`sukumo-city`) stores into it.

`DevPostgres(workdir).start()` runs Debian's postgresql-15 `initdb` and `pg_ctl` on a
free loopback port, its unix socket inside `workdir`. PostgreSQL refuses to run as root,
so under root the cluster belongs to a system user made with `useradd -r` (kept for the
next run) and `workdir` must be traversable by it. Authentication is `trust` on
loopback and fsync is off: a development cluster, never a model for production (see
docs/city.md for that). It imports no database driver: the terminal's venv has none.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from reader.devtools.broker import free_port
from reader.errors import SukumoError

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SYSTEM_USER = "sukumo-pg"


def available() -> bool:
    return (PG_BIN / "initdb").exists()


def _owner() -> pwd.struct_passwd | None:
    """The system user the cluster runs as under root; None: the current user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
                       check=False, capture_output=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


@dataclass
class DevPostgres:
    """One cluster under `workdir`: `start()`, `restart()`, `stop()`, `dsn(db)`."""

    workdir: Path
    port: int = 0
    owner: pwd.struct_passwd | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.data = self.workdir / "data"
        self.sockets = self.workdir / "sock"
        self.log_file = self.workdir / "postgresql.log"

    def own(self, path: Path) -> Path:
        """`path` made the cluster owner's (a directory for a tablespace, say)."""
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        return path

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        ids = {} if self.owner is None else {"user": self.owner.pw_uid,
                                             "group": self.owner.pw_gid}
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              cwd=self.workdir, timeout=120, **ids)  # type: ignore[call-overload]
        if check and proc.returncode != 0:
            raise SukumoError(f"{Path(cmd[0]).name} failed ({proc.returncode}): "
                              f"{(proc.stderr or proc.stdout).strip()}; see {self.log_file}")
        return proc

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.sockets} -c fsync=off "
                   "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=200")
        return self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.log_file), "-w", "-t", "60", "-o", options, *args],
                         check=check)

    def start(self) -> DevPostgres:
        if not available():
            raise SukumoError(f"PostgreSQL 15 is not installed ({PG_BIN}): "
                              "apt-get install postgresql-15")
        self.owner = _owner()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.owner is not None:
            self.workdir.chmod(0o755)
        if not self.port:
            self.port = free_port()
        for path in (self.data, self.sockets):
            path.mkdir(exist_ok=True)
            self.own(path)
        self.log_file.touch()
        self.own(self.log_file)
        if not (self.data / "PG_VERSION").exists():
            self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        self._ctl("start")
        return self

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.data.exists():
            self._ctl("stop", "-m", "fast", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname} connect_timeout=5"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run `sql` with psql (no driver needed); its output."""
        return self._run([str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                          "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "-d", dbname, "-c", sql]).stdout
