"""One reader, one daemon: the physical reader's lock, beside the state directory's.

The state directory's lock (reader/terminal/lock.py) keeps a second daemon off one
terminal's queue; it cannot see a second daemon with another configuration (another
state directory: a test install left running, a second unit) that reads the same reader.
pcscd shares a reader among its clients, so both would read every card and each record
it: one tap, two events. So the daemon claims the reader it opened: an exclusive
flock(2) (reader/system/flock.py) on a file in /run/lock, where the FHS puts device
locks (a serial line's LCK.. files), named after what the transport opened: the reader's
name as pcscd lists it, the device nfcpy found, the virtual reader's feed directory.

The file is made writable by all (mode 0666 in the sticky /run/lock) so that whoever
takes the lock next, root or the service user, can write its pid for the message.
/run/lock unusable (a development machine without it): the tap loop goes on unclaimed,
with a warning, since a terminal that refused to read cards would be worse.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from reader.errors import ReaderBusyError
from reader.system import flock
from reader.system.i18n import _
from reader.system.logs import fields

log = logging.getLogger(__name__)

LOCK_DIR = Path("/run/lock")


def lock_path(key: str, lock_dir: Path = LOCK_DIR) -> Path:
    return lock_dir / f"sukumo-reader.{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"


def claim(key: str, lock_dir: Path = LOCK_DIR) -> flock.Flock | None:
    """Hold the reader `key` (ReaderBusyError when another process does); None when no
    lock could be made here (logged)."""
    path = lock_path(key, lock_dir)
    try:
        return flock.Flock.take(path, key, mode=0o666)
    except flock.Held as exc:
        raise ReaderBusyError(busy_message(exc.pid, key), exc.pid, key) from None
    except OSError as exc:
        log.warning("reader lock unavailable: a second daemon on this reader would go "
                    "unnoticed", **fields(path=str(path), error=exc.strerror or str(exc)))
        return None


def busy_message(pid: int, reader: str) -> str:
    """Why a daemon may not read this reader, in the reader's language."""
    who = (_("another sukumo-reader process (pid {pid})").format(pid=pid) if pid
           else _("another sukumo-reader process"))
    return _("the reader {reader} is already read by {who}, with another configuration: "
             "one reader, one terminal. Stop that process, or choose another reader "
             "([reader] pcsc_reader / nfc_path)").format(reader=reader, who=who)
