"""The queue's one way to write: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlite_utils import Database

log = logging.getLogger("reader.queue.event_queue")


@contextmanager
def write(db: Database, durable: bool = True) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection stays usable).

    `durable=False` commits without its own fsync (synchronous=NORMAL: in WAL mode the
    commit is atomic and consistent, and the next fsynced commit of any connection, or
    the next checkpoint, makes it durable too). Only for changes a power cut may undo
    at no cost but a resend or a redo: in-flight marks, acks, pruning mode state. Every
    tap is recorded durably."""
    if not durable:
        db.execute("PRAGMA synchronous = NORMAL")
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
    finally:
        if not durable:
            db.execute("PRAGMA synchronous = FULL")
