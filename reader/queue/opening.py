"""Opening the queue database: connect, check, and move a broken file aside.

A Pi loses power without warning and SD cards fail; the queue must start anyway. A file
that fails `PRAGMA integrity_check`, or is not an SQLite database at all, is renamed
`<name>.corrupt-<UTC timestamp>` together with its -wal and -shm (so the technician
can still open the three together and recover events from it) and a fresh database is
started. The file is never deleted: whatever taps are still readable in it are owed to
the city. Errors that say nothing about the file's content (permissions, locks, a
missing directory) are raised as they are and never move anything.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlite_utils import Database

from reader.errors import QueueError
from reader.system.logs import fields

log = logging.getLogger(__name__)

OnCorrupt = Literal["move_aside", "raise"]

# A second process (sync, the technician CLI) may hold the write lock for a moment.
BUSY_TIMEOUT_S = 10.0
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_COMPANIONS = ("-wal", "-shm")


class _CorruptDatabase(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def connect(path: Path, *, on_corrupt: OnCorrupt, create: bool,
            check: bool = True) -> tuple[Database, str | None, int]:
    """A checked Database in WAL + synchronous=FULL, the alarm raised on the way (or None)
    and, after a corrupt file was moved aside, the last seq salvaged from it (else 0)."""
    if not path.exists():
        if not create:
            raise QueueError(f"no queue database at {path} (has the daemon run on this "
                             "terminal yet? check paths.state_dir)")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect_checked(path, check), None, 0
    except _CorruptDatabase as exc:
        if on_corrupt == "raise":
            raise QueueError(f"queue database {path} is corrupt: {exc.detail}") from None
        moved = move_aside(path)
        # seq must never be reused (mqtt-v1 §2): the city already holds the old numbers.
        last_seq = salvage_last_seq(moved)
        seq_note = (f"seq continues after {last_seq}" if last_seq else
                    "its last seq could not be read: seq restarts at 1, tell the city")
        alarm = f"database was corrupt ({exc.detail}); moved aside to {moved}; {seq_note}"
        log.error("queue database corrupt; moved aside, starting a fresh one",
                  **fields(path=str(path), moved_to=str(moved), detail=exc.detail,
                           salvaged_last_seq=last_seq))
        try:
            return _connect_checked(path), alarm, last_seq
        except _CorruptDatabase as again:  # a fresh file cannot be corrupt unless the disk is
            raise QueueError(f"fresh queue database {path} fails its check: {again.detail}"
                             ) from None


def salvage_last_seq(moved: Path) -> int:
    """Best effort: the highest seq a damaged queue file still shows (0 if none)."""
    best = 0
    for uri in (f"file:{moved}?mode=ro", f"file:{moved}?immutable=1"):
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=1)
        except sqlite3.Error:
            continue
        try:
            for sql in ("SELECT last_seq FROM seq_counter WHERE id = 1",
                        "SELECT MAX(seq) FROM events"):
                try:
                    row = conn.execute(sql).fetchone()
                except sqlite3.Error:
                    continue
                if row and isinstance(row[0], int):
                    best = max(best, row[0])
        finally:
            conn.close()
    return best


def _connect_checked(path: Path, check: bool = True) -> Database:
    # isolation_level=None: no implicit transactions; every write transaction in the
    # queue is an explicit BEGIN IMMEDIATE ... COMMIT. check_same_thread=False because
    # EventQueue serialises its own calls with a lock.
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    # execute_plugins=False: no sqlite-utils plugin installed on the machine gets to
    # touch the queue's connection (and start-up skips the entry-point scan).
    db = Database(conn, execute_plugins=False)
    try:
        if check:
            _check_integrity(db)
        # synchronous=FULL: in WAL mode NORMAL may lose the last commits on power loss,
        # and a chimed tap must survive the power cut that follows it.
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise QueueError(f"queue database {path}: cannot switch to WAL (got {mode!r})")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        # Deleted rows (acked events: member ids, serials) are overwritten with zeros,
        # not left readable in free space of the file.
        db.execute("PRAGMA secure_delete = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", None) in _CORRUPT_CODES:
            raise _CorruptDatabase(str(exc)) from None
        raise QueueError(f"cannot open queue database {path}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return db


def _check_integrity(db: Database) -> None:
    rows = [row[0] for row in db.execute("PRAGMA integrity_check(5)").fetchall()]
    if rows != ["ok"]:
        raise _CorruptDatabase("integrity_check: " + "; ".join(rows))


def move_aside(path: Path) -> Path:
    """Rename the database and its -wal/-shm to `<name>.corrupt-<UTC timestamp>[-wal|-shm]`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", *_COMPANIONS)):
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in _COMPANIONS:  # companions first: never leave a WAL next to a fresh db
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.rename(f"{target}{suffix}")
    path.rename(target)
    _fsync_directory(path.parent)
    return target


def _fsync_directory(directory: Path) -> None:
    # The rename must be on disk before the fresh database is, or a power cut could
    # bring the corrupt file back under the live name.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
