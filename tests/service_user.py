"""A real unprivileged service user (`useradd -r`), and the CLI run as that user.

The tests run as root. The interpreter lives where an unprivileged user may not read, so
`as_user` forks after the command's modules are imported and the child drops to the user
(setgroups, setgid, setuid: a real unprivileged process, no capability left) before
running `reader.cli.main` with its output in a file. Directories the user must reach are
made under a world-traversable temporary directory (`shared_dir`).
"""

from __future__ import annotations

import importlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reader.cli import main


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int


@pytest.fixture
def unprivileged_user() -> Iterator[ServiceUser]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a real service user (useradd -r)")
    name = f"sukt{os.getpid() % 100000}"
    subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    entry = pwd.getpwnam(name)
    try:
        yield ServiceUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temporary directory every user can traverse (tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sukumo-trust-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_user(user: ServiceUser, argv: list[str], out: Path,
            preload: tuple[str, ...] = (), *, groups: tuple[int, ...] = (),
            env: dict[str, str] | None = None) -> tuple[int, str]:
    """`sukumo-reader ARGV` as `user` (with supplementary `groups`, in environment `env`
    when given): (exit code, stdout + stderr)."""
    for name in (f"reader.cli.{argv[argv.index('--config') + 2]}" if "--config" in argv
                 else f"reader.cli.{argv[0]}", *preload):
        importlib.import_module(name)
    pid = start_as(user, argv, out, groups=groups, env=env)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.read_text()


def start_as(user: ServiceUser, argv: list[str], out: Path, *, groups: tuple[int, ...] = (),
             env: dict[str, str] | None = None, umask: int | None = None) -> int:
    """`sukumo-reader ARGV` as `user` in a child process, not waited for: its pid. The
    modules it needs must be imported already (as_user, or every_module())."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            sys.stdout = sys.stderr = os.fdopen(fd, "w", buffering=1)
            if env is not None:
                os.environ.clear()
                os.environ.update(env)
            if umask is not None:
                os.umask(umask)
            os.setgroups(list(groups))
            os.setgid(user.gid)
            os.setuid(user.uid)
            code = main(argv)
        finally:
            sys.stdout.flush()
            os._exit(code)
    return pid


def every_module() -> None:
    """Import every module of the package (a dropped user cannot read the interpreter's
    library, so whatever a command imports late must be there before the fork)."""
    import pkgutil

    import reader

    for info in pkgutil.walk_packages(reader.__path__, "reader."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
