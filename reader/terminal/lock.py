"""One daemon per terminal: whoever runs the terminal holds `<state_dir>/daemon.lock`.

Two daemons on one state directory record every card twice (each reads the reader), race
each other's mode decisions and, with one MQTT client id, take each other's connection
over again and again. So `run` (and `sync`, which holds the same client id) takes an
exclusive flock(2) on a file in the state directory before it touches anything else, and
a second one is refused naming the pid that holds it.

Why flock and not a pid file: the kernel drops the lock with the last descriptor of the
process however it ends (SIGKILL, the OOM killer, a power cut), so there is never a stale
lock to clean up; the pid written into the file is only there for the message. And a
descriptor opened read-only can take it, so a lock file that root created when a
technician ran `run` by hand still works for the service user afterwards (it is also
handed to the state directory's owner, ownership.adopt).

`holder()` is how the other commands (`tap`, `sound test`) ask whether a daemon runs:
a shared, non-blocking try that they let go of at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from reader.errors import TerminalBusyError
from reader.system.i18n import _
from reader.system.ownership import adopt

LOCK_FILE = "daemon.lock"
UNKNOWN_PID = 0  # held, but the file names no pid we can read
TRIES = 5


class DaemonLock:
    """The exclusive lock of one state directory, held until `release()` or exit."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, state_dir: Path) -> DaemonLock:
        """Take the lock and write our pid into it; TerminalBusyError when another has
        it (the message names its pid and says what to do)."""
        path = Path(state_dir) / LOCK_FILE
        fd, writable = _open(path)
        try:
            _take(fd)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise TerminalBusyError(busy_message(pid, state_dir), pid, state_dir) from None
        except BaseException:
            os.close(fd)
            raise
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            with contextlib.suppress(OSError):  # only the pid in a message depends on it
                adopt(path, Path(state_dir))
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1

    def __enter__(self) -> DaemonLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(state_dir: Path) -> int | None:
    """The pid of the daemon holding `state_dir` (UNKNOWN_PID: held, pid unreadable), or
    None when none does, or when this user cannot even look (the state directory is the
    service user's: then the daemon's own lock still keeps a second daemon out)."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    finally:
        os.close(fd)  # also lets go of the shared lock, if we got it
    return None


def _take(fd: int) -> None:
    # A `tap` asking holder() holds a shared lock for microseconds: try for a moment
    # before calling the terminal busy.
    for _attempt in range(TRIES - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _open(path: Path) -> tuple[int, bool]:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), True
    except PermissionError:  # root's file, from a `run` by hand: the lock works read-only
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return UNKNOWN_PID
    return int(text) if text.isdigit() else UNKNOWN_PID


def busy_message(pid: int, state_dir: Path) -> str:
    """Why a second daemon may not start, in the reader's language."""
    if pid == UNKNOWN_PID:
        return _("the terminal daemon already runs on {state_dir} (its pid cannot be "
                 "read): only one may run per terminal; stop it first (sudo systemctl "
                 "stop sukumo-reader)").format(state_dir=state_dir)
    return _("the terminal daemon already runs (pid {pid}) on {state_dir}: only one may "
             "run per terminal; stop it first (sudo systemctl stop sukumo-reader)").format(
                 pid=pid, state_dir=state_dir)
