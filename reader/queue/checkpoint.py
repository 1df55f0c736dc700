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
"""

from __future__ import annotations

import struct
from pathlib import Path

from sqlite_utils import Database

DUE = 1000  # frames waiting: SQLite's own wal_autocheckpoint default
HELD_BACK = 4000  # pages: SQLite checkpoints inside a commit only past this (16 MB)
_HEADER = 136  # two copies of the 48-byte WalIndexHdr, then WalCkptInfo
_COPY = 48


def frames_waiting(database: Path) -> int | None:
    """Frames in the WAL not yet copied into the database; None when unknown."""
    try:
        with open(f"{database}-shm", "rb", buffering=0) as shm:
            head = shm.read(_HEADER)
    except OSError:
        return None
    if len(head) < _HEADER or head[:_COPY] != head[_COPY:2 * _COPY]:
        return None  # not there yet, or mid-change: ask again next turn
    (max_frame,) = struct.unpack_from("=I", head, 16)
    (backfilled,) = struct.unpack_from("=I", head, 96)
    return max(0, max_frame - backfilled)


class Checkpoints:
    """The checkpoint policy of the daemon's connection to `database`."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._held: Database | None = None  # the connection whose checkpoint is held back
        self.done = 0  # checkpoints run between taps (tests, status)

    def run_if_due(self, db: Database) -> bool:
        """Hold `db`'s own checkpoint back (once per connection: a storage failure gives
        the queue a new one), then checkpoint if DUE frames wait; True when it ran."""
        if db is not self._held:
            db.execute(f"PRAGMA wal_autocheckpoint = {HELD_BACK}")
            self._held = db
        waiting = frames_waiting(self.database)
        if waiting is None or waiting < DUE:
            return False
        # PASSIVE: never waits for a reader (the background check, a technician's CLI);
        # what it could not copy is copied by a later one.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.done += 1
        return True
