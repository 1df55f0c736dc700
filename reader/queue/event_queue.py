"""EventQueue: every recorded tap, durably, until the city acknowledges it.

Theory of operation. A tap becomes one row in one write transaction that also takes the
next `seq`, reads the mode state and the modes' clock, lets the mode decide (`record`)
and writes the mode's state updates, committed with synchronous=FULL before the chime
starts (no other writer can slip between the decision and the write): once `record`
returns, a power cut cannot undo it. Rows then move pending -> in_flight (a batch id and
the time it was sent) -> deleted when the city acks the id, or -> rejected when the city
refuses it (kept for the technician, never sent again). An in-flight row whose ack does
not come within the ack timeout is due again and goes out in a later batch with the same
id and seq.
Nothing unacked is ever deleted, by age or by size: when the disk (or the configured
budget, enforced by SQLite's max_page_count) is full, `append` refuses the new tap with
StorageFullError and everything already recorded stays; the next append after space
returns simply works.

Seq numbers are reserved in blocks in the seq mark beside the file, fsynced before the
commit that first needs them (seqmark.py): one fsync per tap (the WAL's checkpoint runs
between taps: checkpoint.py), and a lost, emptied or damaged file never restarts seq.
Opening salvages a damaged file's events into a fresh one (opening.py, recovery.py,
salvage.py). A write or fsync that fails is never retried on its connection: the
uncertain tap is recorded as voided through a new one (voiding.py).

Every write is BEGIN IMMEDIATE: the daemon, the sync thread and the technician CLI may
each have the file open, and a deferred read-then-write transaction could fail with
SQLITE_BUSY instead of waiting its turn.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from sqlite_utils import Database

from reader.errors import QueueError
from reader.modes.clock import ModeTime, Reading
from reader.modes.state import ModeState, Retention, StateUpdate
from reader.queue.alarms import INSERT_ALARM, set_aside_oversized
from reader.queue.batching import Batch, SentMarks, fill, runs
from reader.queue.checkpoint import Checkpoints
from reader.queue.export import iter_listed
from reader.queue.mode_state import SqlModeState
from reader.queue.opening import OnCorrupt, connect
from reader.queue.pseudonym import KEY_FILE, Pseudonyms
from reader.queue.recovery import CHECK_QUIET_S, BackgroundCheck, recover
from reader.queue.schema import LAST_SEQ, migrate
from reader.queue.seqmark import RESERVE, SeqMark, settle
from reader.queue.space import Space
from reader.queue.summary import read_summary
from reader.queue.transaction import write as _write
from reader.queue.voiding import StorageFailure, storage_failed
from reader.system import plain
from reader.system.i18n import _
from reader.system.uuid7 import uuid7_str
from reader.wire.event import Event, rfc3339_ms
from reader.wire.messages import body_bytes, envelope_bytes
from reader.wire.status import QueueSummary

log = logging.getLogger(__name__)

_RECORDING = "recording the tap"


class Recording(NamedTuple):
    """What a decided tap writes: its event (without seq) and the mode's state updates."""

    event: Event
    updates: tuple[StateUpdate, ...] = ()
    urgent: bool = False  # youth watch: sent ahead of any backlog


class EventQueue:
    def __init__(self, db: Database, path: Path, *, warn_mb: int, budget_mb: int,
                 mark: SeqMark | None = None, pseudonyms: Pseudonyms | None = None,
                 owner: bool = False) -> None:
        self.path = path
        self._owner = owner  # the daemon's own queue (move_aside): settles the mark
        self._mark = mark or SeqMark(path)
        self._lock = threading.RLock()
        self._sizes = (warn_mb, budget_mb)
        self._sent = SentMarks()  # this connection's in-flight marks (take_batch)
        # The secret sits next to the database (the state directory) unless handed in.
        self._secret = (lambda: pseudonyms) if pseudonyms else (
            lambda: Pseudonyms.load_or_create(path.with_name(KEY_FILE)))
        # After a failed write or fsync: a new connection, the uncertain taps voided.
        self._failure = StorageFailure(path)
        self._check: BackgroundCheck | None = None
        self.checkpoints = Checkpoints(path)
        self._attach(db)

    def _attach(self, db: Database) -> None:
        """Use `db` from now on (at opening, and after a storage failure)."""
        self._db = db
        self._space = Space(db, self.path, warn_mb=self._sizes[0], budget_mb=self._sizes[1])
        self.mode_state = SqlModeState(db, self._secret)  # what a mode reads, in this thread

    @classmethod
    def open(cls, path: Path, *, warn_mb: int = 256, budget_mb: int = 1024,
             on_corrupt: OnCorrupt = "move_aside", create: bool = True,
             check: bool = True, pseudonyms: Pseudonyms | None = None) -> EventQueue:
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
            migrate(db, path, lambda: pseudonyms or Pseudonyms.load_or_create(
                path.with_name(KEY_FILE)))
            if on_corrupt == "move_aside":  # only the owner writes what opening found
                recover(opened, path)
            return cls(db, path, warn_mb=warn_mb, budget_mb=budget_mb, mark=opened.mark,
                       pseudonyms=pseudonyms, owner=on_corrupt == "move_aside")
        except sqlite3.Error as exc:
            db.close()
            raise QueueError(_("cannot open queue database {path}: {why}").format(
                path=path, why=plain.sqlite_words(exc))) from None
        except BaseException:
            db.close()
            raise

    def record(self, decide: Callable[[ModeState, ModeTime], Recording],
               now: Reading) -> Event:
        """Decide a tap and record it in ONE write transaction; the stored event. `decide`
        runs under the write lock (BEGIN IMMEDIATE), on the mode state and the modes' time
        (reader/modes/clock.py) as they are then: another writer waits for the commit and
        decides on this tap's state, so no tap is accepted twice, whoever else writes."""
        return self._record(lambda: decide(self.mode_state, self.mode_state.step_clock(now)),
                            boot_id=now.boot_id, mono_ns=now.mono_ns)

    def append(self, event: Event, *, boot_id: str, mono_ns: int,
               updates: Iterable[StateUpdate] = (), urgent: bool = False) -> Event:
        """Record `event` (without seq), already decided, with its mode's state `updates`
        in one transaction; it with its seq. `urgent` (youth watch): sent ahead of any
        backlog (take_batch). The daemon uses `record`."""
        return self._record(lambda: Recording(event, tuple(updates), urgent),
                            boot_id=boot_id, mono_ns=mono_ns)

    def _record(self, make: Callable[[], Recording], *, boot_id: str, mono_ns: int) -> Event:
        if self._check is not None:
            self._check.tapped()  # the background check gives way to a tap
        with self._lock:
            self._failure.recover(self._db, self._attach)  # raises while it cannot
            db, recorded, event_id = self._db, None, "?"
            try:
                with _write(db):
                    event, updates, urgent = make()
                    event_id = event.id
                    if event.seq is not None:
                        raise QueueError(_("append() allocates seq; the event must not "
                                           "carry one"))
                    # No write to seq_counter: one page less per tap (schema.py, v6).
                    seq = db.execute(LAST_SEQ).fetchone()[0] + 1
                    reserved = db.execute("SELECT reserved FROM seq_counter").fetchone()[0]
                    if seq > reserved:  # before the commit, outside the file: seqmark.py
                        self._mark.reserve(seq + RESERVE - 1)
                        db.execute("UPDATE seq_counter SET reserved = ? WHERE id = 1",
                                   (seq + RESERVE - 1,))
                    recorded = event.with_seq(seq)
                    try:
                        body = recorded.dumps()
                    except (TypeError, ValueError) as exc:  # rolled back like any failure
                        raise QueueError(_("event {id} is not JSON-serialisable: {why}")
                                         .format(id=event.id, why=exc)) from None
                    db.execute(
                        "INSERT INTO events (seq, id, at, body, wire_bytes, boot_id, mono_ns,"
                        " clock_synced, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (seq, recorded.id, recorded.at, body, body_bytes(body), boot_id,
                         mono_ns, int(recorded.clock_synced), int(urgent)))
                    self.mode_state.apply(updates)
            except sqlite3.IntegrityError as exc:
                if "events.id" in str(exc):
                    raise QueueError(_("event id {id} is already recorded").format(
                        id=event_id)) from None
                raise QueueError(_("queue: recording the event failed: {why}").format(
                    why=exc)) from None
            except sqlite3.Error as exc:
                error = self._space.translate(exc, _RECORDING, recording=True)
                if storage_failed(exc):  # never again through this connection
                    error = self._failure.failed(exc, error, recorded, boot_id, mono_ns,
                                                 self._db, self._attach)
                raise error from None
            self._space.check_warn()
        assert recorded is not None
        return recorded

    def take_batch(self, *, max_events: int = 500, max_bytes: int = 256 * 1024,
                   ack_timeout_s: float = 30.0, now: float | None = None,
                   tid: str | None = None) -> Batch | None:
        """The next batch to send (due events in seq order), marked in flight; None if none.

        Never-sent urgent events come first, in a batch of their own (a youth-watch tap
        reaches the guardian in seconds behind any backlog): seq order holds in a batch,
        not across (the city orders by seq). `tid`: exact sizes for that terminal id. The
        cost is the same whatever the backlog (batching.SentMarks); marks are an UPDATE per
        run of seqs or put off (defer_marks), unfsynced: a lost one only resends."""
        now = time.time() if now is None else now
        batch_id = uuid7_str()
        room = max_bytes - envelope_bytes(tid, batch_id)
        db = self._db
        with self._lock, self._guard("taking a batch"), _write(db, durable=False):
            marked = self._mark_due(now)
            # INDEXED BY: else the planner walks every pending row per batch (4 ms at 50k).
            urgent = db.execute(
                "SELECT seq, id, body, wire_bytes FROM events INDEXED BY events_urgent "
                "WHERE urgent = 1 AND state = 'pending' ORDER BY seq LIMIT ?",
                (max_events,)).fetchall()
            chosen = fill(iter(urgent), max_events, room)
            scanned, timed_out = False, []
            while not chosen:
                never_sent = db.execute(
                    "SELECT seq, id, body, wire_bytes FROM events WHERE state = 'pending' "
                    "AND seq > ? ORDER BY seq LIMIT ?",
                    (self._sent.deferred.cursor(), max_events)).fetchall()
                if self._sent.overdue_possible(now, ack_timeout_s):
                    scanned = True
                    # sent_at in the future: the clock stepped back since (stale, then NTP).
                    timed_out = db.execute(
                        "SELECT seq, id, body, wire_bytes FROM events WHERE state = "
                        "'in_flight' AND (sent_at <= ? OR sent_at > ?) ORDER BY seq LIMIT ?",
                        (now - ack_timeout_s, now, max_events)).fetchall()
                chosen = fill(heapq.merge(never_sent, timed_out), max_events, room)
                if chosen or not (never_sent or timed_out):
                    break
                set_aside_oversized(self._db, min(never_sent[:1] + timed_out[:1]), max_bytes)
            seq_runs = runs(row[0] for row in chosen)
            defer = self._sent.deferred.after_s > 0 and chosen and not urgent and not timed_out
            if chosen and not defer:
                marked.append(self._mark_in_flight(batch_id, now, seq_runs))
            oldest = (db.execute("SELECT MIN(sent_at) FROM events WHERE state = "
                                 "'in_flight'").fetchone()[0] if scanned else self._sent.oldest)
        # Only once committed: a rolled-back batch must not move the next overdue search.
        self._sent.note(marked, oldest)
        if not chosen:
            return None
        if defer:
            self._sent.deferred.hold(batch_id, now, seq_runs)
        seqs, ids, bodies, _ = zip(*chosen, strict=True)
        return Batch(batch_id, ids, seqs, bodies)

    def defer_marks(self, after_s: float) -> None:  # batching.DeferredMarks
        self._sent.deferred.after_s = after_s

    def flush_marks(self, every: bool = False, now: float | None = None) -> None:
        """Mark the put-off batches now due (or all: before closing) in flight."""
        now = time.time() if now is None else now
        if self._sent.deferred.due(now, every, peek=True):
            with self._lock, self._guard("marking batches in flight"), _write(self._db, False):
                marked = self._mark_due(now, every)
            self._sent.note(marked, self._sent.oldest)

    def _mark_due(self, now: float, every: bool = False) -> list[float]:
        return [self._mark_in_flight(*due) for due in self._sent.deferred.due(now, every)]

    def _mark_in_flight(self, batch_id: str, sent_at: float,
                        seq_runs: list[tuple[int, int]]) -> float:
        # A put-off batch's rows may have been rejected since; a timed-out one's re-marked.
        self._db.conn.executemany(
            "UPDATE events SET state = 'in_flight', batch = ?, sent_at = ? WHERE seq "
            "BETWEEN ? AND ? AND state != 'rejected'",
            [(batch_id, sent_at, lo, hi) for lo, hi in seq_runs])
        return sent_at

    def ack(self, ids: Iterable[str], seqs: Mapping[str, int] | None = None,
            batch: str | None = None) -> int:
        """Delete the events the city stored; ids it does not know are ignored. `seqs`:
        `batch`'s ids as sent (Batch.ids -> Batch.seqs), deleted by runs of seqs (exact: seq
        is unique, each was sent); no fsync: a lost ack only sends those events again."""
        known, ids = seqs or {}, list(ids)
        whole = known.keys() == set(ids)  # the usual ack: the whole batch and nothing else
        by_seq = sorted(known.values() if whole else {known[i] for i in ids if i in known})
        by_id = [] if whole else [(i,) for i in ids if i not in known]
        late: list[float] = []
        with self._lock, self._guard("acking"), _write(self._db, durable=False):
            if (held := self._sent.deferred.release(batch)) and len(by_seq) < held[2]:
                late.append(self._mark_in_flight(batch or "", *held[:2]))  # the rest waits
            # rowcount, not total_changes: the event_counts triggers' writes are not ours.
            conn = self._db.conn
            done = (max(0, conn.executemany("DELETE FROM events WHERE seq BETWEEN ? AND ?",
                                            runs(by_seq)).rowcount)
                    + max(0, conn.executemany("DELETE FROM events WHERE id = ?",
                                              by_id).rowcount))
        self._sent.note(late, self._sent.oldest)
        if done:
            self.settle_wal()
        return done
    def settle_wal(self) -> bool:
        """When nothing is owed to the city, checkpoint and truncate the WAL; True when
        it was. A reader elsewhere (the background check, a technician's CLI) can hold
        the checkpoint back: the daemon asks again with every prune, so the old frames go
        within one prune interval of that reader's end."""
        with self._lock, self._guard("truncating the WAL"):
            owed = self._db.execute(
                "SELECT 1 FROM events WHERE state != 'rejected' LIMIT 1").fetchone()
            if owed is not None:
                return False
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            return not busy

    def prune(self, keep: Callable[[int], Retention], now: Reading) -> int:
        """Forget the mode state no mode needs any more (privacy at rest); rows deleted.
        `keep` is asked at the modes' time (never at a wall clock that jumped ahead). No
        fsync of its own (a tap's is the storage's cost): a prune a power cut undoes is
        done again at the next one, and the next tap's commit makes it durable."""
        with self._lock, self._guard("pruning mode state"), _write(self._db, durable=False):
            pruned = self.mode_state.prune(keep, now)
        self.settle_wal()
        return pruned

    def reject(self, items: Iterable[tuple[str, str]]) -> int:
        """Set aside the events the city will never accept, with its error word."""
        return self._change(
            "UPDATE events SET state = 'rejected', error = ? WHERE id = ? "
            "AND state != 'rejected'", [(error, i) for i, error in items], "rejecting")

    def requeue_in_flight(self) -> int:
        """Make every in-flight event due now (e.g. after a reconnect)."""
        self._sent.deferred.clear()  # their rows are pending already: due now too
        done = self._change("UPDATE events SET state = 'pending', batch = NULL, sent_at = NULL "
                            "WHERE state = 'in_flight'", [()], "requeueing", durable=False)
        self._sent.oldest = None if done else self._sent.oldest
        return done

    def _change(self, sql: str, rows: list[tuple], doing: str, durable: bool = True) -> int:
        if not rows:
            return 0
        with self._lock, self._guard(doing), _write(self._db, durable=durable):
            # rowcount, not total_changes: the event_counts triggers' writes are not ours.
            return max(0, self._db.conn.executemany(sql, rows).rowcount)

    def checkpoint_if_due(self) -> bool:
        """Between taps (the daemon's loop): the WAL's checkpoint, once due (checkpoint.py)."""
        with self._lock, self._guard("checkpointing the WAL"):
            return self.checkpoints.run_if_due(self._db)

    def ping(self) -> None:  # raises unless the database answers (the daemon's watchdog)
        with self._lock, self._guard("answering"):
            self._db.execute("SELECT 1").fetchone()

    def summary(self) -> QueueSummary:
        with self._lock, self._guard("reading the summary"):
            return read_summary(self._db, self._space.used_bytes(), self._space.over_warn)

    def clear_alarms(self) -> int:  # seen by the technician; moved-aside files stay
        return self._change("DELETE FROM alarms", [()], "clearing alarms")

    def iter_events(self, state: str | None = None, limit: int | None = None) -> Iterator[dict]:
        """Events in seq order (export.iter_listed): the event plus `state`, and
        `batch`/`sent_at` (in flight), `error` (rejected), `local` (boot_id, mono_ns,
        clock_synced). `state` is one of STATES, "unacked" or None (all)."""
        return iter_listed(self._read_page, state, limit)

    def _read_page(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock, self._guard("listing events"):
            return self._db.execute(sql, params).fetchall()

    def start_integrity_check(self, quiet_s: float = CHECK_QUIET_S) -> threading.Thread:
        """The full integrity_check the bounded start-up check leaves out, in a
        low-priority thread, in the quiet moments between taps (recovery.BackgroundCheck)."""
        self._check = BackgroundCheck(self.path, self._raise_alarm, quiet_s)
        return self._check.start()

    def _raise_alarm(self, alarm: str) -> None:
        with contextlib.suppress(QueueError):
            self._change(INSERT_ALARM, [(rfc3339_ms(), alarm)], "raising an alarm")

    def close(self) -> None:
        if self._check is not None:
            self._check.stop()
        with self._lock:
            if self._owner and not self._failure.pending:
                settle(self._db, self._mark)  # a clean stop: the exact last seq
            self._db.close()
            self.checkpoints.close()  # after the connection: checkpoint.py

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._space.translate(exc, doing, recording=doing == _RECORDING) from None
