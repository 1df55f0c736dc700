"""The truth about storage: a tap whose write or fsync failed is never sent as accepted.

The citizen who heard the error sound was told the tap was not recorded; the city must
get the same answer. Linux and SQLite make that harder than it looks:

- An fsync that fails (EIO from a failing SD card) does not undo the write: SQLite had
  already written the commit's frames, commit record included, into the -wal file, and
  they sit in the page cache, readable, even when the card lost them ("fsyncgate",
  PostgreSQL 2018: after a failed fsync the kernel may mark the pages clean, so a retry
  "succeeds" without the data). SQLite leaves them out of the WAL index, so the failing
  connection does not see them, but the next process that opens the file rebuilds the
  index from the -wal and finds a whole, valid commit: the tap comes back as accepted.
- Retrying the fsync proves nothing (see above), and a connection whose write failed
  is in a state SQLite's own documentation tells us not to reason about.

So, as PostgreSQL does (it crashes and recovers from its log, never retries an fsync),
the queue never takes another tap on that connection: EventQueue opens a NEW connection
and records the uncertain event again, under its own id and seq, as `voided` (result
rejected, reason "voided", no mode state: no debounce, no coupon counted), with an alarm.
The new connection is opened before the old one closes, so the WAL index in shared
memory stays as it was and is not rebuilt from the -wal: the voided commit is written
where the failed one was, over its frames (or after a WAL restart, whose new salt makes
them invalid), and whatever reaches the disk later, the failed commit cannot come back
as it was. If that write fails too, no further tap is written until it succeeds: taps
get the error sound and are counted as unrecorded.

Only an I/O error makes the outcome uncertain. A full disk, a read-only file system or
the budget fail before any commit record is written: nothing to void (and, on a full
disk, no seq used), but the connection is replaced all the same.

In case the process dies first (SIGKILL, a power cut) or the voided write cannot be
made, the uncertain events are also noted beside the file (`<queue file>.void`, one
JSON line each, fsynced, best effort): the next start voids them before anything is
sent (recovery.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlite_utils import Database

from reader.card.reasons import Reason
from reader.errors import QueueError, StorageFailedError, StorageFullError
from reader.queue.opening import connect
from reader.queue.schema import LAST_SEQ
from reader.queue.transaction import write
from reader.system.atomic import write_atomic
from reader.system.i18n import _
from reader.system.logs import fields
from reader.wire.event import Event, rfc3339_ms
from reader.wire.messages import body_bytes

log = logging.getLogger(__name__)

# Primary result codes (the low byte of SQLite's extended codes).
_IOERR = sqlite3.SQLITE_IOERR
_STORAGE = {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
            sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def storage_failed(exc: sqlite3.Error) -> bool:
    """The storage itself failed: the connection is not written through again."""
    return _primary(exc) in _STORAGE


def uncertain(exc: sqlite3.Error) -> bool:
    """The failed commit may be on disk (or come back from the -wal): an I/O error."""
    return _primary(exc) == _IOERR


@dataclass(frozen=True)
class Void:
    """An event whose recording failed, as it goes to the city instead: voided."""

    event: Event  # with its seq, reason "voided"
    boot_id: str
    mono_ns: int
    why: str

    @classmethod
    def of(cls, recorded: Event, boot_id: str, mono_ns: int, why: str) -> Void:
        return cls(replace(recorded, reason=Reason.VOIDED, detail={}), boot_id, mono_ns, why)

    def to_line(self) -> str:
        return json.dumps({"event": self.event.to_json(), "boot_id": self.boot_id,
                           "mono_ns": self.mono_ns, "why": self.why}) + "\n"


def note_path(database: Path) -> Path:
    return database.with_name(database.name + ".void")


def write_note(database: Path, voids: Iterable[Void]) -> None:
    """Best effort: the storage is failing, and the note may fail with it (logged)."""
    path = note_path(database)
    try:
        write_atomic(path, "".join(v.to_line() for v in voids).encode(), 0o640)
    except OSError as exc:
        log.error("uncertain tap not noted beside the queue", **fields(
            path=str(path), why=str(exc)))


def read_note(database: Path) -> list[Void]:
    """The voids noted by a process that could not write them; unreadable lines skipped."""
    try:
        text = note_path(database).read_text(errors="replace")
    except OSError:
        return []
    voids = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
            voids.append(Void(Event.from_json(doc["event"]), str(doc["boot_id"]),
                              int(doc["mono_ns"]), str(doc["why"])))
        except (ValueError, KeyError, TypeError):
            log.error("unreadable line in the queue's void note", **fields(
                path=str(note_path(database))))
    return voids


def clear_note(database: Path) -> None:
    with contextlib.suppress(OSError):
        note_path(database).unlink()


def apply(db: Database, voids: Iterable[Void]) -> list[str]:
    """In the caller's write transaction: each uncertain event recorded as voided (the
    row rewritten if the failed commit came back, else inserted under its seq); the
    alarms to raise (English: they are wire values)."""
    alarms = []
    for void in voids:
        event, seq = void.event, void.event.seq
        assert seq is not None
        body = event.dumps()
        row = db.execute("SELECT body FROM events WHERE id = ?", (event.id,)).fetchone()
        if row is not None and json.loads(row[0]).get("reason") == Reason.VOIDED:
            continue  # voided already (the voided commit came back from the -wal)
        if row is not None:  # the failed commit came back: the row is rewritten
            db.execute("UPDATE events SET body = ?, wire_bytes = ? WHERE id = ?",
                       (body, body_bytes(body), event.id))
        else:
            last = db.execute(LAST_SEQ).fetchone()[0]
            if seq <= last:  # taken since by a recorded tap: this one never was
                log.warning("uncertain tap was not recorded; nothing to void", **fields(
                    id=event.id, seq=seq))
                continue
            db.execute(
                "INSERT INTO events (seq, id, at, body, wire_bytes, boot_id, mono_ns,"
                " clock_synced, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (seq, event.id, event.at, body, body_bytes(body), void.boot_id,
                 void.mono_ns, int(event.clock_synced)))
        alarm = (f"storage failed while recording a tap ({void.why}); its event {event.id} "
                 f"(seq {seq}) goes to the city as voided, as the citizen was told; "
                 "check the SD card")
        db.execute("INSERT INTO alarms (raised_at, message) VALUES (?, ?)",
                   (rfc3339_ms(), alarm))
        alarms.append(alarm)
    return alarms


class StorageFailure:
    """What a failed write leaves to do before the next tap: a new connection, and the
    uncertain taps recorded as voided through it (EventQueue.append)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending = False  # a write failed and its aftermath is not done yet
        self.voids: list[Void] = []

    def failed(self, exc: sqlite3.Error, error: QueueError, recorded: Event | None,
               boot_id: str, mono_ns: int, db: Database,
               attach: Callable[[Database], None]) -> QueueError:
        """`recorded` (the tap with its seq, if it got one) failed with `exc`: note it,
        try the aftermath at once; the error for the tap."""
        self.pending = True
        if recorded is not None and uncertain(exc):
            self.voids.append(Void.of(recorded, boot_id, mono_ns, str(exc)))
            write_note(self.path, self.voids)  # first: a SIGKILL may come next
        log.error("queue storage failed; the tap is not recorded, the connection is "
                  "replaced", **fields(path=str(self.path), why=str(exc), voiding=(
                      recorded.id if recorded is not None and self.voids else None)))
        with contextlib.suppress(StorageFailedError):
            self.recover(db, attach)
        if isinstance(error, StorageFullError):
            return error
        return StorageFailedError(_(
            "queue database {path}: the storage failed while recording the tap ({why}); "
            "this tap was not recorded").format(path=self.path, why=exc))

    def recover(self, old: Database, attach: Callable[[Database], None]) -> None:
        """Replace `old` with a new connection and void what is uncertain through it;
        StorageFailedError while that cannot be done (no tap is written meanwhile)."""
        if not self.pending:
            return
        try:
            # Opened before the old one closes: the WAL index stays as it is (see above).
            db = connect(self.path, on_corrupt="raise", create=False, check=False).db
        except (QueueError, sqlite3.Error) as exc:
            raise StorageFailedError(_(
                "queue database {path} cannot be opened again after a storage failure "
                "({why}); this tap was not recorded").format(path=self.path, why=exc)) from None
        attach(db)
        with contextlib.suppress(sqlite3.Error):
            old.close()
        if self.voids:
            try:
                with write(db):
                    alarms = apply(db, self.voids)
            except sqlite3.Error as exc:
                raise StorageFailedError(_(
                    "queue database {path}: the storage still fails ({why}); this tap "
                    "was not recorded").format(path=self.path, why=exc)) from None
            for alarm in alarms:
                log.error("queue alarm", **fields(path=str(self.path), alarm=alarm))
            self.voids.clear()
            clear_note(self.path)
        self.pending = False
        log.warning("queue storage usable again on a new connection", **fields(
            path=str(self.path)))
