"""An exclusive flock(2) on a file that names its holder: the terminal's state directory
(reader/terminal/lock.py) and its physical reader (reader/transports/claim.py).

Why flock and not a pid file: the kernel drops the lock with the last descriptor of the
process however it ends (SIGKILL, the OOM killer, a power cut), so there is never a stale
lock to clean up; what is written into the file (the holder's pid, and what it holds) is
only there for the message. A descriptor opened read-only can take the lock too, so a
file that root created when a technician ran `run` by hand still works for the service
user afterwards.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

UNKNOWN_PID = 0  # held, but the file names no pid we can read
TRIES = 5


class Held(Exception):
    """Another process holds the lock: its pid (UNKNOWN_PID when unreadable)."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pid = pid


class Flock:
    """One exclusive lock, held until `release()` or the process's end."""

    def __init__(self, path: Path, fd: int, writable: bool) -> None:
        self.path, self._fd, self.writable = path, fd, writable

    @classmethod
    def take(cls, path: Path, *lines: str, mode: int = 0o644) -> Flock:
        """Lock `path` (created with `mode`, whatever the umask, when missing) and write
        our pid and `lines` into it; Held when another process has it. OSError when the
        file cannot be opened at all."""
        fd, writable = _open(path, mode)
        try:
            _take(fd)
        except BlockingIOError:
            pid = read_holder(fd)
            os.close(fd)
            raise Held(pid) from None
        except BaseException:
            os.close(fd)
            raise
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, "".join(f"{line}\n" for line in (str(os.getpid()), *lines))
                      .encode(), 0)
        return cls(path, fd, writable)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def holder(path: Path) -> int | None:
    """The pid holding `path` (UNKNOWN_PID: held, pid unreadable), or None when nobody
    does or this user cannot even look. A shared, non-blocking try, let go of at once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(fd)
    finally:
        os.close(fd)  # also lets go of the shared lock, if we got it
    return None


def read_holder(fd: int) -> int:
    """The pid on the file's first line (UNKNOWN_PID when there is none)."""
    try:
        first = os.pread(fd, 32, 0).decode("ascii", "replace").partition("\n")[0].strip()
    except OSError:
        return UNKNOWN_PID
    return int(first) if first.isdigit() else UNKNOWN_PID


def _take(fd: int) -> None:
    # Someone asking holder() holds a shared lock for microseconds: try for a moment
    # before calling the lock held.
    for _attempt in range(TRIES - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _open(path: Path, mode: int) -> tuple[int, bool]:
    # O_NOFOLLOW and a regular file only: in the world-writable /run/lock another local
    # user could plant a link there for root's `run` to truncate what it points to.
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, mode)
    except FileExistsError:
        pass
    except PermissionError:
        return _regular(os.open(path, os.O_RDONLY | flags)), False
    else:
        os.fchmod(fd, mode)  # ours, new: the mode asked for, not the umask's
        return fd, True
    try:
        return _regular(os.open(path, os.O_RDWR | flags)), True
    except PermissionError:  # another user's file: the lock works read-only
        return _regular(os.open(path, os.O_RDONLY | flags)), False


def _regular(fd: int) -> int:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd
