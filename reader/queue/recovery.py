"""After opening: salvage a damaged file's events, keep seq above every seq ever used, and
raise the alarm the technician and the city see.

Runs once per start in the process that owns the queue (on_corrupt="move_aside"), after
the schema is current, in ONE write transaction: the salvaged events, the seq counter
and the alarm commit together or not at all (a crash half way leaves the moved-aside file
to salvage again at the next start, and INSERT OR IGNORE makes a second pass harmless).

What raises an alarm (kept in the `alarms` table; shown by `status`, doctor, `queue
summary` and the MQTT status):
- the file was damaged and moved aside (how many events were salvaged from it);
- the file was missing or empty where the seq mark says a queue existed;
- the file's last seq is below the mark (an older copy put back): seq goes on above it
  (seqmark.py: what a reserved block can and cannot tell);
- the mark itself is unreadable (it is rewritten from the queue);
- a tap whose recording failed was voided (voiding.py: noted by a process that died
  before it could record the voided event).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from reader.errors import QueueError
from reader.queue import voiding
from reader.queue.opening import Opened, full_check, note_damage
from reader.queue.salvage import salvage_events
from reader.queue.schema import LAST_SEQ
from reader.system.logs import fields
from reader.wire.event import rfc3339_ms

log = logging.getLogger(__name__)
_CHUNK = 1000
_INSERT = ("INSERT OR IGNORE INTO events (seq, id, at, body, wire_bytes, boot_id, mono_ns, "
           "clock_synced, state, error, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def recover(opened: Opened, path: Path) -> None:
    db = opened.db
    db.execute("BEGIN IMMEDIATE")
    try:
        salvaged, top = _salvage(db, opened.moved) if opened.moved else (0, 0)
        last = db.execute(LAST_SEQ).fetchone()[0]
        reserved = db.execute("SELECT reserved FROM seq_counter WHERE id = 1").fetchone()[0]
        marked = opened.marked or 0
        older = not (opened.moved or opened.missing) and _older_copy(opened, last, reserved)
        if not (opened.moved or opened.missing or older):
            marked = 0  # an intact file's own counter is right
        floor = max(last, marked, opened.last_seq_aside, top)
        alarms = _alarms(opened, path, last, floor, salvaged, older)
        mark = opened.marked
        if mark is None or mark < floor:
            # Under the write lock (no other process allocates meanwhile) and before the
            # commit: the mark is never below the counter in the file.
            try:
                opened.mark.write(floor)
                mark = floor
            except QueueError as exc:  # e.g. a full disk: start anyway, and say so
                # The alarm is a wire value (status, MQTT): English in any locale, so it is
                # written from the OSError, not from the message for a person.
                alarms.append(f"cannot write the seq high-water mark {opened.mark.path}: "
                              f"{exc.__cause__ or exc}; seq relies on the queue file alone "
                              "until it is")
        if mark is not None and mark < reserved:
            # The file's reservation is never above the mark: a settle at the last stop
            # wrote the mark but could not commit (a full disk). Raised in place, so this
            # start writes nothing to the file for it (a full disk must not stop it).
            with contextlib.suppress(QueueError):  # the mark's own alarm is above
                opened.mark.reserve(reserved)
        if floor != last:
            db.execute("UPDATE seq_counter SET last_seq = ? WHERE id = 1", (floor,))
        for alarm in alarms:
            db.execute("INSERT INTO alarms (raised_at, message) VALUES (?, ?)",
                       (rfc3339_ms(), alarm))
        # Taps a process could not void before it died: before anything is sent.
        voids = voiding.read_note(path)
        alarms += voiding.apply(db, voids)
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise
    if voids:
        voiding.clear_note(path)
    for alarm in alarms:
        log.error("queue alarm", **fields(path=str(path), alarm=alarm))


def _salvage(db: Database, moved: Path) -> tuple[int, int]:
    """Copy the moved file's events in, as due (in flight ones are sent again, with the
    same id and seq); set-aside ones stay set aside. (count, highest seq)."""
    count = top = 0
    rows = salvage_events(moved)
    while chunk := list(itertools.islice(rows, _CHUNK)):
        due = [(*row[:8], "rejected" if row[8] == "rejected" else "pending", *row[9:])
               for row in chunk]
        count += max(0, db.conn.executemany(_INSERT, due).rowcount)
        top = max(top, max(row[0] for row in chunk))
    log.warning("events salvaged from a damaged queue file",
                **fields(moved=str(moved), events=count, highest_seq=top))
    return count, top


def _older_copy(opened: Opened, last: int, reserved: int) -> bool:
    """An intact file that ends below what the mark says was used (seqmark.py)."""
    marked = opened.marked
    if marked is None:
        return False
    if not opened.mark.reserved:
        # The exact last seq of a clean stop; one above it after an append killed or
        # rolled back between an (older release's) mark and its commit.
        return last + 1 < marked
    # A reservation is made by the tap taking seq `reserved + 1`, when `last` is
    # `reserved`: a file whose reservation is below the mark's ends there (the
    # reserving tap never committed), or it is an older copy.
    return reserved < marked and last < reserved


def _alarms(opened: Opened, path: Path, last: int, floor: int, salvaged: int,
            older: bool) -> list[str]:
    seq_note = (f"seq continues after {floor}" if floor else
                "its last seq could not be read: seq restarts at 1, tell the city")
    alarms = []
    if opened.moved is not None:
        alarms.append(f"database was corrupt ({opened.damage}); moved aside to "
                      f"{opened.moved}; {salvaged} event(s) salvaged from it and queued "
                      f"to be sent; {seq_note}")
    elif opened.missing:
        alarms.append(f"database {path} was missing where one existed (seq mark "
                      f"{opened.mark.path}); a fresh one was started; {seq_note}")
    elif older:
        alarms.append(f"database {path} ends at seq {last}, below the seq mark "
                      f"{opened.marked} (an older copy of the file?); {seq_note}")
    if opened.mark_problem:
        alarms.append(f"seq high-water mark unreadable ({opened.mark_problem}); rewritten "
                      f"from the queue; {seq_note}")
    return alarms


CHECK_QUIET_S = 10.0  # the full check starts once no tap came for this long


class BackgroundCheck:
    """The full integrity_check, in a low-priority thread of its own, that never competes
    with a tap (issue 22: at a million queued events its seconds of reading, on the other
    core, raised the taps' p99 by a third). It starts once no tap came for `quiet_s`; a
    tap interrupts it (sqlite3_interrupt), and it starts again at the next quiet moment.
    A failure is logged, raised as an alarm and noted beside the file: the next start
    moves it aside and salvages its events (never from under the running daemon)."""

    def __init__(self, path: Path, raise_alarm: Callable[[str], None],
                 quiet_s: float = CHECK_QUIET_S) -> None:
        self.path, self._raise_alarm, self.quiet_s = path, raise_alarm, quiet_s
        self._last_tap = time.monotonic()
        self._conn: sqlite3.Connection | None = None  # while a check runs
        self._closing = threading.Event()

    def tapped(self) -> None:
        """A tap is being recorded: the check gives way (called by the appending thread)."""
        self._last_tap = time.monotonic()
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="queue-check", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._closing.set()
        self.tapped()

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # a nicer thread only; Linux nices per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while not self._closing.wait(max(0.0, self._last_tap + self.quiet_s - time.monotonic())):
            if time.monotonic() - self._last_tap < self.quiet_s:
                continue  # a tap came meanwhile
            try:
                problem = full_check(self.path, self._using)
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
                    continue  # a tap came: again at the next quiet moment
                log.warning("queue integrity check could not run", **fields(
                    path=str(self.path), why=str(exc)))  # not a verdict on the file
                return
            if problem is not None:
                self._failed(problem)
            return

    def _using(self, conn: sqlite3.Connection | None) -> None:
        self._conn = conn
        if conn is not None and time.monotonic() - self._last_tap < self.quiet_s:
            conn.interrupt()  # a tap came between the wait and the connection

    def _failed(self, problem: str) -> None:
        log.error("queue database failed its integrity check while in use", **fields(
            path=str(self.path), detail=problem))
        note_damage(self.path, problem)
        self._raise_alarm(f"database failed its integrity check while in use ({problem}); "
                          "restart the daemon: it moves the file aside and salvages its events")
