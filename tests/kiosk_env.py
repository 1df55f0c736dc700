"""A real `sukumo-reader kiosk` process, optionally on a page socket held for it the way
systemd's sukumo-reader-kiosk.socket holds it, and an attacker that runs as another uid.

`KioskProc` starts the kiosk in a language; with `listen` (a listening socket this test
process keeps, as PID 1 would) the kiosk gets it as fd 3 with LISTEN_FDS/LISTEN_PID
(sd_listen_fds(3)), so the port stays held while the kiosk is killed and restarted.
`attacker` runs tests/kiosk_attacker.py as an unprivileged service user (setpriv: no
groups, no capabilities) with Debian's own python3: what any other local account can do.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_env import DAEMON, REPO, language_env
from waiting import end_process, wait_for

ATTACKER = Path(__file__).with_name("kiosk_attacker.py")
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory (a socket path is at most 107 bytes), 0700 like RuntimeDirectory=."""
    path = Path(tempfile.mkdtemp(prefix="sk-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def kiosk_section(http_port: int, feed: Path, hold_s: float = 30, viewers: str = "") -> str:
    return (f"[feedback]\nscreen = true\nscreen_http_port = {http_port}\n"
            f'screen_feed = "{feed}"\nscreen_hold_s = {hold_s}\n'
            + (f'screen_viewers = ["{viewers}"]\n' if viewers else ""))


def held_port() -> socket.socket:
    """A listening socket on 127.0.0.1, as systemd's ListenStream= makes it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


class KioskProc:
    def __init__(self, config: Path, lang: str = "ja_JP.UTF-8",
                 listen: socket.socket | None = None) -> None:
        self.log = config.parent / "kiosk.log"
        argv = [*DAEMON, "--config", str(config), "kiosk"]
        stdin: Any = subprocess.DEVNULL
        if listen is not None:
            # fd 3 is the held socket; $$ is the pid the kiosk keeps after `exec`.
            argv = ["sh", "-c", 'exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$@"',
                    "sh", *argv]
            stdin = listen.fileno()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=language_env(lang), stdin=stdin,
                                         stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, *, kill: bool = False) -> int | None:
        end_process(self.proc, kill=kill)
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def get(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_serving(url: str, timeout: float = 20.0) -> None:
    def up() -> bool:
        try:
            return get(url)[0] == 200
        except OSError:
            return False
    wait_for(up, timeout, f"the kiosk page at {url}")


def attacker(user: Any, *args: str, timeout: float = 60.0
             ) -> subprocess.CompletedProcess[str]:
    """tests/kiosk_attacker.py ARGS as `user` (another uid, no groups), to completion."""
    return subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
         "--inh-caps=-all", SYSTEM_PYTHON, str(_readable_attacker()), *args],
        capture_output=True, text=True, timeout=timeout, cwd="/")


def attacker_popen(user: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
         "--inh-caps=-all", SYSTEM_PYTHON, str(_readable_attacker()), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")


_copies: list[Path] = []


def _readable_attacker() -> Path:
    """The attacker script where another user can read it (the checkout may not be)."""
    if not _copies:
        where = Path(tempfile.mkdtemp(prefix="sukumo-attacker-"))
        where.chmod(0o755)
        atexit.register(shutil.rmtree, where, True)
        _copies.append(shutil.copyfile(ATTACKER, where / ATTACKER.name))
        _copies[0].chmod(0o644)
    return _copies[0]
