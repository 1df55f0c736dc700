"""Opening the queue database: connect, check, and move a broken file aside.

A Pi loses power without warning and SD cards fail; the queue must start anyway. A file
that is empty, not an SQLite database, fails the bounded start-up check
(`_check_bounded`) or failed the full background check while in use (`note_damage`) is
renamed `<name>.corrupt-<UTC timestamp>` together with its -wal and -shm and a fresh
database is started; recovery.py then salvages every event still readable in it into
the fresh one. The file is never deleted. Errors that say nothing about the file's
content (permissions, locks, a missing directory) are raised as they are and never move
anything. Whether a missing file is a first start or a lost queue is told by the seq
high-water mark beside it (seqmark.py), which outlives the file.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlite_utils import Database

from reader.errors import QueueError
from reader.queue.seqmark import SeqMark
from reader.system import plain
from reader.system.atomic import fsync_dir
from reader.system.i18n import _
from reader.system.logs import fields

log = logging.getLogger(__name__)

OnCorrupt = Literal["move_aside", "raise"]

# A second process (sync, the technician CLI) may hold the write lock for a moment.
BUSY_TIMEOUT_S = 10.0
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_COMPANIONS = ("-wal", "-shm")
_DAMAGED = ".damaged"  # beside the file: a check failed while it was in use


class _CorruptDatabase(Exception):
    """Internal: never reaches a person as such. Its detail is English on purpose: it is
    logged, written beside the file and becomes the alarm in status (a wire value); the
    CLI's QueueError says the rest in the person's language."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class Opened:
    """A connected queue file and what opening it found, for recovery.py to act on."""

    db: Database
    mark: SeqMark
    marked: int | None  # the seq high-water mark (None: no mark file, or unreadable)
    mark_problem: str | None  # why the mark file could not be read
    missing: bool  # the queue file was absent (or moved aside) and a fresh one started
    damage: str | None = None  # why the file was moved aside
    moved: Path | None = None  # where it went: the events in it are salvaged from there
    last_seq_aside: int = 0  # the highest seq the moved file still shows


def connect(path: Path, *, on_corrupt: OnCorrupt, create: bool,
            check: bool = True) -> Opened:
    """A checked Database in WAL + synchronous=FULL, with what was found on the way.

    A missing file is created only with `create`; a file that was there and is gone is
    told apart from a terminal's first start by the seq high-water mark beside it."""
    mark = SeqMark(path)
    marked, mark_problem = mark.read()
    if not path.exists():
        if not create:
            if marked:
                raise QueueError(_(
                    "no queue database at {path} (its seq high-water mark says {n} taps were "
                    "numbered: the file was removed; keep the mark, call the city support)"
                    ).format(path=path, n=marked))
            raise QueueError(_("no queue database at {path} (has the daemon run on this "
                               "terminal yet? check paths.state_dir)").format(path=path))
        path.parent.mkdir(parents=True, exist_ok=True)
        missing = marked is not None or mark_problem is not None
        wal = Path(f"{path}-wal")
        if on_corrupt == "move_aside" and wal.exists() and wal.stat().st_size:
            # The file went, its WAL stayed (deleted after a crash): a WAL must never meet
            # a fresh file, and its frames hold the newest taps, salvaged from there.
            moved = move_aside(path)
            return Opened(_connect_checked(path, False), mark, marked, mark_problem, True,
                          "the file was missing, its WAL was left", moved)
        return Opened(_connect_checked(path, False), mark, marked, mark_problem, missing)
    # A technician in the service's group (docs/technician.md) reads the queue but may
    # not write it: a read-only connection, for the secondary readers only.
    read_only = on_corrupt == "raise" and not os.access(path, os.W_OK)
    try:
        if check:  # a second connection (check=False) trusts the owner's start-up
            _known_damage(path)
        return Opened(_connect_checked(path, check, read_only), mark, marked, mark_problem,
                      False)
    except _CorruptDatabase as exc:
        if on_corrupt == "raise":
            # The detail is SQLite's English (also the journal's and the alarm's): logged.
            plain.keep(exc.detail, path=path)
            raise QueueError(_(
                "queue database {path} is corrupt. Nothing was changed: the daemon moves it "
                "aside and salvages its events at its next start (`systemctl restart "
                "sukumo-reader`)").format(path=path)) from None
        moved = move_aside(path)
        Path(f"{path}{_DAMAGED}").unlink(missing_ok=True)  # acted upon: the file is aside
        last_seq = salvage_last_seq(moved)
        log.error("queue database corrupt; moved aside, starting a fresh one",
                  **fields(path=str(path), moved_to=str(moved), detail=exc.detail,
                           salvaged_last_seq=last_seq))
        try:
            db = _connect_checked(path, False)
        except _CorruptDatabase as again:  # a fresh file cannot be corrupt unless the disk is
            raise QueueError(_("fresh queue database {path} fails its check: {detail}"
                               ).format(path=path, detail=again.detail)) from None
        return Opened(db, mark, marked, mark_problem, True, exc.detail, moved, last_seq)


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


def _connect_checked(path: Path, check: bool = True, read_only: bool = False) -> Database:
    # isolation_level=None: no implicit transactions; every write transaction in the
    # queue is an explicit BEGIN IMMEDIATE ... COMMIT. check_same_thread=False because
    # EventQueue serialises its own calls with a lock.
    conn = sqlite3.connect(_read_only_uri(path) if read_only else str(path),
                           timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False, uri=read_only)
    # execute_plugins=False: no sqlite-utils plugin installed on the machine gets to
    # touch the queue's connection (and start-up skips the entry-point scan).
    db = Database(conn, execute_plugins=False)
    try:
        if check:
            _check_bounded(db, path)
        if read_only:
            return db
        # synchronous=FULL: in WAL mode NORMAL may lose the last commits on power loss,
        # and a chimed tap must survive the power cut that follows it.
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise QueueError(_("queue database {path}: cannot switch to WAL (got {mode!r})"
                               ).format(path=path, mode=mode))
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        # Deleted rows (acked events: member ids, serials) are overwritten with zeros,
        # not left readable in free space of the file.
        db.execute("PRAGMA secure_delete = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", None) in _CORRUPT_CODES:
            raise _CorruptDatabase(str(exc)) from None
        raise QueueError(_("cannot open queue database {path}: {why}").format(
            path=path, why=plain.sqlite_words(exc))) from None
    except BaseException:
        conn.close()
        raise
    return db


def _read_only_uri(path: Path) -> str:
    """A WAL database is read through its -shm, which a reader who may not write the
    directory cannot create: while the daemon runs its -wal and -shm are there (read
    them, mode=ro); when it does not, nobody writes the file and it is read as it is on
    disk (immutable)."""
    running = Path(f"{path}-wal").exists()
    return path.resolve().as_uri() + ("?mode=ro" if running else "?immutable=1")


def _known_damage(path: Path) -> None:
    """Damage seen before SQLite is asked: an empty file, or a failed background check."""
    if path.stat().st_size == 0:
        raise _CorruptDatabase("the file is empty (0 bytes)")
    note = Path(f"{path}{_DAMAGED}")
    if note.exists():
        raise _CorruptDatabase(note.read_text(errors="replace").strip()
                               or "the background integrity check failed")


def _check_bounded(db: Database, path: Path) -> None:
    """The start-up check: work bounded by the tree depth, not by the backlog.

    It catches what stops a terminal from taking and sending taps: a file that is not
    SQLite or whose header is wrecked, a truncated file (shorter than its header says, or
    not whole pages), an unreadable schema, and a damaged page on the path to the first
    or last entry of every table and index (where appends, batches and acks work).
    Damage deep inside a large tree is left to `full_check`, run in the background once
    the terminal is READY (Terminal.run): integrity_check takes seconds per million
    events, which no start-up can afford.
    """
    with path.open("rb") as fh:
        header = fh.read(100)
    size = path.stat().st_size
    wal = Path(f"{path}-wal")
    # With frames in the WAL the file may lawfully be short: a checkpoint cut off by a
    # full disk has written page 1 but not the pages after it, which the WAL still holds.
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    if wal_empty and header.startswith(b"SQLite format 3\x00") and len(header) == 100:
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        pages, counter, valid_for = (struct.unpack(">I", header[o:o + 4])[0]
                                     for o in (28, 24, 92))
        if size % page_size or (counter == valid_for and pages * page_size > size):
            raise _CorruptDatabase(f"truncated: {size} bytes where the header counts "
                                   f"{pages} pages of {page_size}")
    objects = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE type "
                         "IN ('table', 'index') AND name NOT LIKE 'sqlite_stat%'").fetchall()
    for kind, name, table, sql in objects:
        for order in ("ASC", "DESC"):
            if kind == "table":
                db.execute(f'SELECT * FROM "{name}" NOT INDEXED ORDER BY rowid {order} '
                           "LIMIT 1").fetchall()
                continue
            columns = [row[2] for row in db.execute(f'PRAGMA index_info("{name}")')]
            if not columns or None in columns:
                break  # an expression index: not ours, left to the full check
            partial = re.split(r"\sWHERE\s", sql or "", maxsplit=1, flags=re.I)[1:]
            where = f" WHERE {partial[0]}" if partial else ""
            names = ", ".join(f'"{c}"' for c in columns)
            ordered = ", ".join(f'"{c}" {order}' for c in columns)
            db.execute(f'SELECT {names} FROM "{table}" INDEXED BY "{name}"{where} '
                       f"ORDER BY {ordered} LIMIT 1").fetchall()


def full_check(path: Path,
               using: Callable[[sqlite3.Connection | None], None] = lambda _conn: None
               ) -> str | None:
    """PRAGMA integrity_check on its own read-only connection: None when the file is
    sound, else what is wrong; sqlite3.Error when the check could not run at all (or was
    interrupted through the connection `using` was handed). Seconds per million events:
    run it in the background (recovery.BackgroundCheck)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    using(conn)
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in _CORRUPT_CODES:
            raise  # locked, I/O, permissions: says nothing about the content
        return f"integrity_check: {exc}"
    finally:
        using(None)
        conn.close()
    return None if rows == ["ok"] else "integrity_check: " + "; ".join(rows)


def note_damage(path: Path, detail: str) -> None:
    """Leave word for the next start that the file failed a check while in use: it is
    moved aside and its events salvaged then (never from under a running daemon)."""
    note = Path(f"{path}{_DAMAGED}")
    note.write_text(detail + "\n")
    fsync_dir(path.parent)


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
    if path.exists():  # only its WAL may be left (see connect)
        path.rename(target)
    # The rename must be on disk before the fresh database is, or a power cut could
    # bring the corrupt file back under the live name.
    fsync_dir(path.parent)
    return target

