"""The WAL's checkpoint between taps, never inside one.

SQLite copies the WAL back into the database file (a checkpoint) inside whichever commit
takes the WAL past `wal_autocheckpoint` pages (1,000 by default). A tap writes about six
pages, so every ~170th tap would wait, before its chime, for a thousand page writes into
the database file and two more flushes: on an SD card (10 ms a flush, a few MB/s of
scattered writes) a pause the citizen at the reader notices, on one tap in a few hundred
(docs/benchmarks.md: `tap_to_chime_ms_max_sd`).

So the daemon's connection leaves that automatic checkpoint to a far larger WAL (HELD_BACK
pages: a safety net, should the loop not turn), and the tap loop calls `run_if_due()`
after each tap (its chime already playing) and in each idle turn: a PASSIVE checkpoint
once DUE frames wait, as SQLite would have done, one tap later. The same flushes, the
same WAL size: only who waits for them changes. A tap that arrives during a checkpoint
waits for the disk as before; the citizen who just tapped does not.

How many frames wait is read from the WAL-index header at the start of the -shm file
(https://www.sqlite.org/walformat.html, "The WAL-Index Header": mxFrame at byte 16 and
nBackfill at byte 96, in the machine's byte order), its two copies compared as SQLite
itself does. A header caught mid-change or a missing -shm only means no checkpoint this
turn; the safety net still bounds the WAL.

The -shm is read through ONE descriptor, opened once and closed only after the queue's
connection: closing any descriptor of a file drops every POSIX lock this process holds on
it, SQLite's too ("How To Corrupt An SQLite Database File" §2.2). Opened and closed each
turn, it let the next process that opened the queue (a technician's `status`) think it
was alone, reset the -shm under the daemon's mapping, and the daemon died of SIGBUS.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from sqlite_utils import Database

DUE = 1000  # frames waiting: SQLite's own wal_autocheckpoint default
HELD_BACK = 4000  # pages: SQLite checkpoints inside a commit only past this (16 MB)
_HEADER = 136  # two copies of the 48-byte WalIndexHdr, then WalCkptInfo
_COPY = 48


class Checkpoints:
    """The checkpoint policy of the daemon's connection to `database`."""

    def __init__(self, database: Path) -> None:
        self.shm = Path(f"{database}-shm")
        self._held: Database | None = None  # the connection whose checkpoint is held back
        self._fds: list[int] = []  # the -shm's, newest last: closed only by close()
        self.done = 0  # checkpoints run between taps (tests)

    def run_if_due(self, db: Database) -> bool:
        """Hold `db`'s own checkpoint back (once per connection: a storage failure gives
        the queue a new one), then checkpoint if DUE frames wait; True when it ran."""
        if db is not self._held:
            db.execute(f"PRAGMA wal_autocheckpoint = {HELD_BACK}")
            self._held = db
        waiting = self.frames_waiting()
        if waiting is None or waiting < DUE:
            return False
        # PASSIVE: never waits for a reader (the background check, a technician's CLI);
        # what it could not copy is copied by a later one.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.done += 1
        return True

    def frames_waiting(self) -> int | None:
        """Frames in the WAL not yet copied into the database; None when unknown."""
        fd = self._descriptor()
        if fd is None:
            return None
        try:
            head = os.pread(fd, _HEADER, 0)
        except OSError:
            return None
        if len(head) < _HEADER or head[:_COPY] != head[_COPY:2 * _COPY]:
            return None  # not there yet, or mid-change: ask again next turn
        (max_frame,) = struct.unpack_from("=I", head, 16)
        (backfilled,) = struct.unpack_from("=I", head, 96)
        return max(0, max_frame - backfilled)

    def close(self) -> None:
        """After the queue's connection is closed (see the module's note)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def _descriptor(self) -> int | None:
        try:
            current = os.stat(self.shm).st_ino
            if self._fds and os.fstat(self._fds[-1]).st_ino == current:
                return self._fds[-1]
            # A new -shm (the file moved aside, a new connection): the old descriptor is
            # kept open too, for a connection of this process may still hold its locks.
            self._fds.append(os.open(self.shm, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return None
        return self._fds[-1]
