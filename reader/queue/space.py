"""How much room the queue takes, and what a full disk or budget means for a caller.

The budget is enforced by SQLite itself (`max_page_count`): growing past it fails like a
full disk, so both end as one StorageFullError that says which it was and that every
event recorded before is kept.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from reader.errors import QueueError, StorageFullError
from reader.system.logs import fields

log = logging.getLogger("reader.queue.event_queue")

MIB = 1024 * 1024
_FULL_CODES = {sqlite3.SQLITE_FULL, getattr(sqlite3, "SQLITE_IOERR_SHMSIZE", -1)}


class Space:
    def __init__(self, db: Database, path: Path, *, warn_mb: int, budget_mb: int) -> None:
        self._db, self.path = db, path
        self._warn_bytes = warn_mb * MIB
        self._budget_mb = budget_mb
        self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        self._max_pages = max(1, budget_mb * MIB // self._page_size)
        db.execute(f"PRAGMA max_page_count = {self._max_pages}")
        self.over_warn = False
        self.check_warn()

    def used_bytes(self) -> int:
        # Free pages left by acked events are reused by new ones, so they do not count.
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def check_warn(self) -> None:
        used = self.used_bytes()
        over = used > self._warn_bytes
        if over == self.over_warn:
            return
        self.over_warn = over
        where = fields(path=str(self.path), db_bytes=used, warn_bytes=self._warn_bytes)
        if over:
            log.warning("queue database passed its warn threshold", **where)
        else:
            log.info("queue database back under its warn threshold", **where)

    def translate(self, exc: sqlite3.Error, doing: str, *, recording: bool) -> QueueError:
        if getattr(exc, "sqlite_errorcode", None) not in _FULL_CODES:
            return QueueError(f"queue database {self.path}: {doing} failed: {exc}")
        try:
            at_budget = (self._db.execute("PRAGMA page_count").fetchone()[0]
                         >= self._max_pages)
        except sqlite3.Error:
            at_budget = False
        why = (f"it reached its budget of {self._budget_mb} MiB (queue.budget_mb)"
               if at_budget else "the disk is full")
        outcome = "this tap was not recorded" if recording else f"{doing} failed"
        log.error("queue database cannot grow", **fields(path=str(self.path), why=why,
                                                          doing=doing))
        return StorageFullError(
            f"queue database {self.path} cannot grow: {why}; {outcome}. Every event "
            "recorded before is kept, and the queue resumes by itself once there is room "
            "(free disk space; events acked by the city free room in the budget).")
