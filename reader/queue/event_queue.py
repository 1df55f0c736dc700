"""EventQueue: every recorded tap, durably, until the city acknowledges it.

Theory of operation. A tap becomes one row in one write transaction that also takes the
next `seq` and runs the caller's extra statements (mode state), committed with
synchronous=FULL before the chime starts: once `append` returns, a power cut cannot
undo it. Rows then move pending -> in_flight (a batch id and the time it was sent)
-> deleted when the city acks the id, or -> rejected when the city refuses it (kept for
the technician, never sent again). An in-flight row whose ack does not come within the
ack timeout is due again and goes out in a later batch with the same id and seq.
Nothing unacked is ever deleted, by age or by size: when the disk (or the configured
budget, enforced by SQLite's max_page_count) is full, `append` refuses the new tap with
StorageFullError and everything already recorded stays; the next append after space
returns simply works.

The seq taken is also written, fsynced, to the seq mark beside the file before the
commit (seqmark.py), so a lost, emptied or damaged file never restarts seq; opening
salvages a damaged file's events into a fresh one (opening.py, recovery.py, salvage.py).

Every write is BEGIN IMMEDIATE: the daemon, the sync thread and the technician CLI may
each have the file open, and a deferred read-then-write transaction could fail with
SQLITE_BUSY instead of waiting its turn.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from reader.errors import QueueError, StorageFullError
from reader.modes.state import StateUpdate
from reader.queue.batching import Batch, Row, fill
from reader.queue.mode_state import SqlModeState, apply_updates
from reader.queue.opening import OnCorrupt, connect, full_check, note_damage
from reader.queue.recovery import recover
from reader.queue.schema import migrate
from reader.queue.seqmark import SeqMark
from reader.queue.summary import read_summary
from reader.system.logs import fields
from reader.system.uuid7 import uuid7_str
from reader.wire.event import Event, rfc3339_ms
from reader.wire.messages import body_bytes, envelope_bytes
from reader.wire.status import QueueSummary

log = logging.getLogger(__name__)

MIB = 1024 * 1024
STATES = ("pending", "in_flight", "rejected")
_RECORDING = "recording the tap"
_PAGE = 1000  # rows per read in iter_events: no long-lived read transaction
_FULL_CODES = {sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_SHMSIZE", -1)}


class EventQueue:
    def __init__(self, db: Database, path: Path, *, warn_mb: int, budget_mb: int,
                 mark: SeqMark | None = None) -> None:
        self._db = db
        self.path = path
        self._mark = mark or SeqMark(path)
        self._lock = threading.RLock()
        self._warn_bytes = warn_mb * MIB
        self._budget_mb = budget_mb
        self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        # The budget is enforced by SQLite itself: growing past it fails like a full disk.
        self._max_pages = max(1, budget_mb * MIB // self._page_size)
        db.execute(f"PRAGMA max_page_count = {self._max_pages}")
        self._over_warn = False
        self._check_warn()
        self.mode_state = SqlModeState(db)  # what a mode reads, in the appending thread

    @classmethod
    def open(cls, path: Path, *, warn_mb: int = 256, budget_mb: int = 1024,
             on_corrupt: OnCorrupt = "move_aside", create: bool = True,
             check: bool = True) -> EventQueue:
        """Open (or create) the queue at `path`, checked and migrated.

        `on_corrupt="raise"` is for secondary readers (technician CLI): they report a
        corrupt file instead of moving it from under a running daemon. `create=False`
        raises QueueError when there is no database yet. `check=False` skips the
        integrity check, for a second connection in a process that has just run it.
        """
        path = Path(path)
        opened = connect(path, on_corrupt=on_corrupt, create=create, check=check)
        db = opened.db
        try:
            migrate(db, path)
            if on_corrupt == "move_aside":  # only the owner writes what opening found
                recover(opened, path)
            return cls(db, path, warn_mb=warn_mb, budget_mb=budget_mb, mark=opened.mark)
        except sqlite3.Error as exc:
            db.close()
            raise QueueError(f"cannot open queue database {path}: {exc}") from None
        except BaseException:
            db.close()
            raise

    def append(self, event: Event, *, boot_id: str, mono_ns: int,
               updates: Iterable[StateUpdate] = (), urgent: bool = False) -> Event:
        """Record `event` (without seq) durably with its mode's state `updates`, in one
        transaction; return it with its seq.

        `urgent` events (youth watch) are sent ahead of any backlog (see take_batch)."""
        if event.seq is not None:
            raise QueueError("append() allocates seq; the event must not carry one")
        db = self._db
        with self._lock:
            try:
                with _write(db):
                    seq = db.execute("UPDATE seq_counter SET last_seq = last_seq + 1 "
                                     "WHERE id = 1 RETURNING last_seq").fetchall()[0][0]
                    # Before the commit, outside the file: see seqmark.py.
                    self._mark.advance(seq)
                    recorded = event.with_seq(seq)
                    body = recorded.dumps()
                    db.execute(
                        "INSERT INTO events (seq, id, at, body, wire_bytes, boot_id, mono_ns,"
                        " clock_synced, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (seq, recorded.id, recorded.at, body, body_bytes(body), boot_id,
                         mono_ns, int(recorded.clock_synced), int(urgent)))
                    apply_updates(db, updates)
            except sqlite3.IntegrityError as exc:
                if "events.id" in str(exc):
                    raise QueueError(f"event id {event.id} is already recorded") from None
                raise QueueError(f"queue: recording the event failed: {exc}") from None
            except sqlite3.Error as exc:
                raise self._translate(exc, _RECORDING) from None
            except (TypeError, ValueError) as exc:  # rolled back like any other failure
                raise QueueError(f"event {event.id} is not JSON-serialisable: {exc}"
                                 ) from None
            self._check_warn()
        return recorded

    def take_batch(self, *, max_events: int = 500, max_bytes: int = 256 * 1024,
                   ack_timeout_s: float = 30.0, now: float | None = None,
                   tid: str | None = None) -> Batch | None:
        """The next batch to send (due events in seq order), marked in flight; None if none.

        Never-sent urgent events come first, in a batch of their own: a youth-watch tap
        reaches the guardian service in seconds even behind a week's backlog. Across
        batches seq order is then not kept, which mqtt-v1 does not ask for (the city
        orders by seq and reports gaps); within a batch it always is.

        `tid` makes the size accounting exact for that terminal id; without it the
        longest tid mqtt-v1 allows is assumed.
        """
        now = time.time() if now is None else now
        batch_id = uuid7_str()
        room = max_bytes - envelope_bytes(tid, batch_id)
        db = self._db
        with self._lock, self._guard("taking a batch"), _write(db):
            urgent = db.execute(
                "SELECT seq, id, body, wire_bytes FROM events WHERE urgent = 1 AND "
                "state = 'pending' ORDER BY seq LIMIT ?", (max_events,)).fetchall()
            chosen = fill(iter(urgent), max_events, room)
            while not chosen:
                never_sent = db.execute(
                    "SELECT seq, id, body, wire_bytes FROM events WHERE state = 'pending' "
                    "ORDER BY seq LIMIT ?", (max_events,)).fetchall()
                # A sent_at in the future means the wall clock stepped back since (a Pi
                # booting with a stale clock, then NTP): due now, not in days.
                timed_out = db.execute(
                    "SELECT seq, id, body, wire_bytes FROM events WHERE state = 'in_flight' "
                    "AND (sent_at <= ? OR sent_at > ?) ORDER BY seq LIMIT ?",
                    (now - ack_timeout_s, now, max_events)).fetchall()
                chosen = fill(heapq.merge(never_sent, timed_out), max_events, room)
                if chosen or not (never_sent or timed_out):
                    break
                self._set_aside_oversized(min(never_sent[:1] + timed_out[:1]), max_bytes)
            if not chosen:
                return None
            db.conn.executemany(
                "UPDATE events SET state = 'in_flight', batch = ?, sent_at = ? WHERE seq = ?",
                [(batch_id, now, row[0]) for row in chosen])
        return Batch(batch_id, tuple(row[1] for row in chosen), tuple(row[0] for row in chosen),
                     tuple(row[2] for row in chosen))

    def _set_aside_oversized(self, row: Row, max_bytes: int) -> None:
        # An event that cannot fit any batch would block every later one forever. It is
        # kept (never deleted) but set aside, loudly, for the technician.
        error = f"local: event of {row[3]} bytes cannot fit a batch of {max_bytes} bytes"
        self._db.execute("UPDATE events SET state = 'rejected', error = ? WHERE seq = ?",
                         (error, row[0]))
        log.error("queue event too large to send; set aside as rejected",
                  **fields(seq=row[0], id=row[1], bytes=row[3]))

    def ack(self, ids: Iterable[str]) -> int:
        """Delete the events the city stored; ids it does not know are ignored."""
        return self._change("DELETE FROM events WHERE id = ?", [(i,) for i in ids], "acking")

    def reject(self, items: Iterable[tuple[str, str]]) -> int:
        """Set aside the events the city will never accept, with its error word."""
        return self._change(
            "UPDATE events SET state = 'rejected', error = ? WHERE id = ? "
            "AND state != 'rejected'", [(error, i) for i, error in items], "rejecting")

    def requeue_in_flight(self) -> int:
        """Make every in-flight event due now (e.g. after a reconnect)."""
        return self._change(
            "UPDATE events SET state = 'pending', batch = NULL, sent_at = NULL "
            "WHERE state = 'in_flight'", [()], "requeueing")

    def _change(self, sql: str, rows: list[tuple], doing: str) -> int:
        if not rows:
            return 0
        with self._lock, self._guard(doing), _write(self._db):
            # rowcount, not total_changes: the event_counts triggers' writes are not ours.
            return max(0, self._db.conn.executemany(sql, rows).rowcount)

    def ping(self) -> None:
        """Raise unless the database answers (the daemon's watchdog asks this)."""
        with self._lock, self._guard("answering"):
            self._db.execute("SELECT 1").fetchone()

    def summary(self) -> QueueSummary:
        with self._lock, self._guard("reading the summary"):
            return read_summary(self._db, self._used_bytes(), self._over_warn)

    def clear_alarms(self) -> int:
        """The technician has seen the alarms (the moved-aside files stay where they are)."""
        return self._change("DELETE FROM alarms", [()], "clearing alarms")

    def iter_events(self, state: str | None = None, limit: int | None = None
                    ) -> Iterator[dict]:
        """Events in seq order: the event plus `state`, and `batch`/`sent_at` (in flight),
        `error` (rejected), `local` (boot_id, mono_ns, clock_synced).

        `state` is one of STATES, "unacked" (pending + in_flight) or None (all).
        """
        if state not in (None, "unacked", *STATES):
            raise QueueError(f"unknown queue state {state!r}; use one of "
                             f"{', '.join((*STATES, 'unacked'))}")
        where = {None: "1", "unacked": "state != 'rejected'"}.get(state, "state = ?")
        params: tuple = (state,) if state in STATES else ()
        after, left = 0, limit
        while left is None or left > 0:
            page = min(_PAGE, left) if left is not None else _PAGE
            with self._lock, self._guard("listing events"):
                rows = self._db.execute(
                    "SELECT seq, body, state, batch, sent_at, error, boot_id, mono_ns,"
                    f" clock_synced FROM events WHERE seq > ? AND {where} ORDER BY seq "
                    "LIMIT ?", (after, *params, page)).fetchall()
            for row in rows:
                yield _listed(row)
            if len(rows) < page:
                return
            after = rows[-1][0]
            left = None if left is None else left - len(rows)

    def start_integrity_check(self) -> threading.Thread:
        """The full integrity_check the bounded start-up check leaves out, in a
        low-priority background thread. A failure is logged, raised as an alarm and noted
        beside the file: the next start moves it aside and salvages its events."""
        thread = threading.Thread(target=self._integrity_check, name="queue-check",
                                  daemon=True)
        thread.start()
        return thread

    def _integrity_check(self) -> None:
        with contextlib.suppress(OSError):  # a nicer thread only; Linux nices per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            problem = full_check(self.path)
        except sqlite3.Error as exc:  # not a verdict on the file: nothing is noted
            log.warning("queue integrity check could not run", **fields(
                path=str(self.path), why=str(exc)))
            return
        if problem is None:
            return
        log.error("queue database failed its integrity check while in use", **fields(
            path=str(self.path), detail=problem))
        note_damage(self.path, problem)
        alarm = (f"database failed its integrity check while in use ({problem}); restart "
                 "the daemon: it moves the file aside and salvages its events")
        with contextlib.suppress(QueueError):
            self._change("INSERT INTO alarms (raised_at, message) VALUES (?, ?)",
                         [(_utc_now(), alarm)], "raising an alarm")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- size -------------------------------------------------------------------------

    def _used_bytes(self) -> int:
        # Free pages left by acked events are reused by new ones, so they do not count.
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _check_warn(self) -> None:
        used = self._used_bytes()
        over = used > self._warn_bytes
        if over == self._over_warn:
            return
        self._over_warn = over
        where = fields(path=str(self.path), db_bytes=used, warn_bytes=self._warn_bytes)
        if over:
            log.warning("queue database passed its warn threshold", **where)
        else:
            log.info("queue database back under its warn threshold", **where)

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from None

    def _translate(self, exc: sqlite3.Error, doing: str) -> QueueError:
        if getattr(exc, "sqlite_errorcode", None) not in _FULL_CODES:
            return QueueError(f"queue database {self.path}: {doing} failed: {exc}")
        try:
            at_budget = (self._db.execute("PRAGMA page_count").fetchone()[0]
                         >= self._max_pages)
        except sqlite3.Error:
            at_budget = False
        why = (f"it reached its budget of {self._budget_mb} MiB (queue.budget_mb)"
               if at_budget else "the disk is full")
        outcome = ("this tap was not recorded" if doing == _RECORDING
                   else f"{doing} failed")
        log.error("queue database cannot grow", **fields(path=str(self.path), why=why,
                                                          doing=doing))
        return StorageFullError(
            f"queue database {self.path} cannot grow: {why}; {outcome}. Every event "
            "recorded before is kept, and the queue resumes by itself once there is room "
            "(free disk space; events acked by the city free room in the budget).")


@contextmanager
def _write(db: Database) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection stays usable)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("queue: rollback failed")
        raise


def _listed(row: tuple) -> dict[str, Any]:
    _seq, body, state, batch, sent_at, error, boot_id, mono_ns, clock_synced = row
    out: dict[str, Any] = {**json.loads(body), "state": state}
    if state == "in_flight":
        out["batch"] = batch
        out["sent_at"] = rfc3339_ms(int(sent_at * 1000))
    if state == "rejected":
        out["error"] = error
    out["local"] = {"boot_id": boot_id, "mono_ns": mono_ns, "clock_synced": bool(clock_synced)}
    return out


def _utc_now() -> str:
    return rfc3339_ms()
