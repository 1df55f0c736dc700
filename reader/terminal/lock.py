"""One daemon per terminal: whoever runs the terminal holds `<state_dir>/daemon.lock`.

Two daemons on one state directory record every card twice (each reads the reader), race
each other's mode decisions and, with one MQTT client id, take each other's connection
over again and again. So `run` (and `sync`, which holds the same client id) takes an
exclusive flock(2) (reader/system/flock.py: why flock) on a file in the state directory
before it touches anything else, and a second one is refused naming the pid that holds
it. The file is handed to the state directory's owner (ownership.adopt), so a lock file
root created when a technician ran `run` by hand works for the service user afterwards.
Two state directories on one reader are kept apart by the reader's own lock
(reader/transports/claim.py).

`holder()` is how the other commands (`tap`, `sound test`) ask whether a daemon runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from reader.errors import TerminalBusyError
from reader.system import flock
from reader.system.i18n import _
from reader.system.ownership import adopt

LOCK_FILE = "daemon.lock"
UNKNOWN_PID = flock.UNKNOWN_PID


class DaemonLock:
    """The exclusive lock of one state directory, held until `release()` or exit."""

    def __init__(self, held: flock.Flock) -> None:
        self.path, self._held = held.path, held

    @classmethod
    def acquire(cls, state_dir: Path) -> DaemonLock:
        """Take the lock and write our pid into it; TerminalBusyError when another has
        it (the message names its pid and says what to do)."""
        path = Path(state_dir) / LOCK_FILE
        try:
            held = flock.Flock.take(path)
        except flock.Held as exc:
            raise TerminalBusyError(busy_message(exc.pid, state_dir), exc.pid,
                                    state_dir) from None
        if held.writable:
            with contextlib.suppress(OSError):  # only the pid in a message depends on it
                adopt(path, Path(state_dir))
        return cls(held)

    def release(self) -> None:
        self._held.release()

    def __enter__(self) -> DaemonLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(state_dir: Path) -> int | None:
    """The pid of the daemon holding `state_dir` (UNKNOWN_PID: held, pid unreadable), or
    None when none does, or when this user cannot even look (the state directory is the
    service user's: then the daemon's own lock still keeps a second daemon out)."""
    return flock.holder(Path(state_dir) / LOCK_FILE)


def busy_message(pid: int, state_dir: Path) -> str:
    """Why a second daemon may not start, in the reader's language."""
    if pid == UNKNOWN_PID:
        return _("the terminal daemon already runs on {state_dir} (its pid cannot be "
                 "read): only one may run per terminal; stop it first (sudo systemctl "
                 "stop sukumo-reader)").format(state_dir=state_dir)
    return _("the terminal daemon already runs (pid {pid}) on {state_dir}: only one may "
             "run per terminal; stop it first (sudo systemctl stop sukumo-reader)").format(
                 pid=pid, state_dir=state_dir)
