"""A private, real pcscd with vsmartcard's vpcd reader, for the PC/SC tests.

pcscd 1.9 always serves /run/pcscd/pcscd.comm (the server ignores PCSCLITE_CSOCK_NAME),
so only one can run per machine: the fixture refuses to touch a pcscd it did not start
(the tests skip, saying how to stop it) and serialises test processes on a lock file.
The vpcd reader is registered the way Debian's vsmartcard-vpcd does it
(/etc/reader.conf.d/vpcd), but in a private reader.conf.d (`pcscd -c DIR`) on a free
loopback port pair (vpcd's two slots listen on PORT and PORT + 1).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
PCSCD_PID = Path("/run/pcscd/pcscd.pid")
LOCK_FILE = Path("/tmp/sukumo-reader-tests-pcscd.lock")
VPCD_READER = "Virtual PCD 00 00"  # slot 0; pcscd appends "<reader index> <slot>"
_in_use = threading.Lock()


def missing_stack() -> str | None:
    """Why the PC/SC tests cannot run here, or None."""
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (apt-get install pcscd)"
    if not VPCD_DRIVER.exists():
        return "vpcd is not installed (apt-get install vsmartcard-vpcd)"
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        return "pyscard is not importable"
    return None


def free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            if port + 1 < 65536:
                return port
    raise RuntimeError("no free loopback port pair for vpcd")


def _die_with_parent() -> None:
    # A test run killed hard (timeout, Ctrl-C twice) must not leave its pcscd behind:
    # the next run could not start one. PR_SET_PDEATHSIG = 1.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _foreign_pcscd() -> int | None:
    """The pid of a running pcscd this test run did not start, after clearing orphans."""
    try:
        pid = int(PCSCD_PID.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    if _orphan_of_a_test_run(pid):
        # Started by this fixture in a test run that was killed hard: ours to stop.
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                return None
            time.sleep(0.05)
    return pid


def _orphan_of_a_test_run(pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    conf = args[args.index(b"--config") + 1].decode() if b"--config" in args else ""
    return ppid == 1 and conf.startswith(tempfile.gettempdir()) and "pcscd" in conf


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until_field_empty(reader: str = VPCD_READER, timeout: float = 3.0) -> None:
    """Block until pcscd reports no card on `reader`.

    vpcd is polled by pcscd every 400 ms: a card lifted and another tapped faster than
    that is never seen leaving (a hand is slower). Tests lift, then wait for this.
    """
    from reader.config import ReaderSettings
    from reader.transports.pcsc import PcscTransport

    probe = PcscTransport(ReaderSettings(transport="pcsc", pcsc_reader=reader))
    deadline = time.monotonic() + timeout
    while any(r.card_present for r in probe.describe().readers if r.name == reader):
        if time.monotonic() > deadline:
            raise AssertionError(f"pcscd never saw the card leave {reader}")
        time.sleep(0.05)


class Pcscd:
    """One pcscd process in the foreground, restartable, with a vpcd reader."""

    def __init__(self, workdir: Path) -> None:
        self.conf_dir = workdir / "reader.conf.d"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "pcscd.log"
        self.port = free_port_pair()
        self.proc: subprocess.Popen[bytes] | None = None
        self.plug_vpcd()

    @property
    def vpcd_conf(self) -> Path:
        return self.conf_dir / "vpcd"

    def plug_vpcd(self) -> None:
        self.vpcd_conf.write_text(
            'FRIENDLYNAME "Virtual PCD"\n'
            f"DEVICENAME   /dev/null:{self.port:#06x}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {self.port:#06x}\n")

    def unplug_vpcd(self) -> None:
        self.vpcd_conf.unlink(missing_ok=True)

    def start(self, timeout: float = 5.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "pcscd already running"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["pcscd", "--foreground", "--info", "--config", str(self.conf_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pcscd exited: {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pcscd not ready: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)

    def _ready(self) -> bool:
        if not PCSCD_SOCKET.exists():
            return False
        if not self.vpcd_conf.exists():
            return True
        with socket.socket() as probe:  # vpcd listens once pcscd has loaded the reader
            probe.settimeout(0.2)
            return probe.connect_ex(("127.0.0.1", self.port + 1)) == 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean stop; SIGKILL: a crash (leaves its socket file behind)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if sig == signal.SIGKILL:
            # A crashed pcscd leaves its files; the next one would refuse to start.
            PCSCD_SOCKET.unlink(missing_ok=True)
            PCSCD_PID.unlink(missing_ok=True)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


def _take(lock: IO[str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.skip(f"another test run has held pcscd for {timeout:.0f} s ({LOCK_FILE})")
            time.sleep(0.2)


@contextlib.contextmanager
def running_pcscd(workdir: Path) -> Iterator[Pcscd]:
    why = missing_stack()
    if why:
        pytest.skip(why)
    if _in_use.locked():
        # flock would block on our own lock: two fixture instances at once in one process.
        raise RuntimeError("a pcscd from this process is still running (fixture scopes?)")
    LOCK_FILE.touch(exist_ok=True)
    with _in_use, LOCK_FILE.open("r+") as lock:
        _take(lock)  # one pcscd per machine: one test process at a time
        other = _foreign_pcscd()
        if other is not None:
            pytest.skip(f"another pcscd (pid {other}) is running; stop it first "
                        "(systemctl stop pcscd.socket pcscd.service)")
        server = Pcscd(workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


# Module scope: the machine-wide lock is held one test module at a time, so a second
# test run (another engineer, CI retry) waits minutes at most, not a whole session.
@pytest.fixture(scope="module")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    with running_pcscd(tmp_path_factory.mktemp("pcscd")) as server:
        yield server
