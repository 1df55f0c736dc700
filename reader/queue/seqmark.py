"""The seq high-water mark: no seq above it was ever used, kept OUTSIDE the queue file.

mqtt-v1 §2: seq is never reused. The queue's own `seq_counter` dies with the queue file
(emptied, truncated, deleted, its header wrecked), so the mark lives beside it, in
`<queue file>.seq`, and every seq the city may hold is at or below it.

Seq numbers are RESERVED in blocks (issue 22, item 10). Writing the mark per tap cost a
second fsync per tap (the WAL commit is the first): on a Pi the SD card's flush, not the
CPU, is the cost of a tap, and its wear. So the tap that needs a seq above the
reservation (`seq_counter.reserved`, in the file) writes the mark `RESERVE` numbers
ahead, fsynced, inside its transaction and before its COMMIT; the next RESERVE - 1 taps
write nothing here: one fsync per tap, plus one per RESERVE taps. At a clean stop the
owner writes the exact last seq (`settle`), so the next start knows it exactly.

What the mark says after damage: seq goes on above it, never below. After a clean stop
that is exactly the last seq; after a crash or power cut it is the end of the block, so
the city sees a gap of up to RESERVE numbers after damage (and the alarm). An intact
file is trusted over its mark (recovery.py): gap-free after every crash. The one case a
block cannot tell apart: an OLDER copy of the file put back after a crash (no clean
stop) while still in the block of the real one; stop the service before restoring one.

The file is one fixed-width line, `<20 digits> exact   ` or `<20 digits> reserved`,
overwritten in place (`os.pwrite` of 30 bytes at offset 0, then `fdatasync`): no
allocation, so it cannot fail on a full disk, and one write of less than a sector is not
torn by a power cut on the storage a Pi uses. A line of digits alone (an older release)
is exact. It is created by write-to-temp, fsync, rename, fsync of the directory, so it
is never seen half written.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from reader.errors import QueueError
from reader.queue.schema import LAST_SEQ
from reader.queue.transaction import write
from reader.system.atomic import write_atomic
from reader.system.i18n import _
from reader.system.logs import fields

log = logging.getLogger("reader.queue.event_queue")

_WIDTH = 20  # digits: any 64-bit seq
RESERVE = 1000  # seq numbers reserved per fsync of the mark


def mark_path(database: Path) -> Path:
    return database.with_name(database.name + ".seq")


def _encode(seq: int, reserved: bool) -> bytes:
    return f"{seq:0{_WIDTH}d} {'reserved' if reserved else 'exact':<8}\n".encode()


class SeqMark:
    """The mark beside one queue file: `read()` once at opening, `reserve()` when a tap
    needs a seq above the reservation, `settle()` at a clean stop."""

    def __init__(self, database: Path) -> None:
        self.path = mark_path(database)
        # False only where PRAGMA synchronous=OFF is set too: a benchmark preparing a
        # backlog. Never in a terminal.
        self.sync = True
        self.reserved = False  # what read() found: a reservation (else the exact last seq)

    def read(self) -> tuple[int | None, str | None]:
        """(the mark, None), (None, None) when there is no mark file, or (None, why) when
        it exists but cannot be read: damage the caller raises an alarm for."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"cannot read {self.path}: {exc}"
        words = data.decode("ascii", "replace").split()
        if not words or not words[0].isdigit() or words[1:] not in ([], ["exact"],
                                                                    ["reserved"]):
            return None, f"{self.path} holds no seq ({len(data)} bytes)"
        self.reserved = words[1:] == ["reserved"]
        return int(words[0]), None

    def write(self, seq: int, reserved: bool = False) -> None:
        """Create or replace the mark atomically (at opening; never per tap)."""
        try:
            write_atomic(self.path, _encode(seq, reserved), 0o640)
        except OSError as exc:
            raise QueueError(_("cannot write the seq high-water mark {path}: {why}").format(
                path=self.path, why=exc)) from exc  # recovery's alarm: English, from exc

    def reserve(self, upto: int) -> None:
        """Record that seqs up to `upto` may be used; durable when this returns."""
        self._put(upto, reserved=True)

    def settle(self, last: int) -> None:
        """At a clean stop, under the write lock: the exact last seq."""
        self._put(last, reserved=False)

    def _put(self, seq: int, reserved: bool) -> None:
        # The file is opened per call (an open costs microseconds, the fdatasync
        # milliseconds): a mark another process replaced is never written through a
        # stale descriptor.
        try:
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except FileNotFoundError:  # a queue opened by a reader, never recovered
                self.write(seq, reserved)
                return
            try:
                os.pwrite(fd, _encode(seq, reserved), 0)
                if self.sync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise QueueError(_("cannot advance the seq high-water mark {path}: {why}; this tap "
                               "was not recorded").format(path=self.path, why=exc)) from None


def settle(db: Database, mark: SeqMark) -> None:
    """At a clean stop: the exact last seq in the mark, and the file's reservation back
    at it (both under the write lock), so the next start tells an older copy exactly."""
    try:
        with write(db):
            last = db.execute(LAST_SEQ).fetchone()[0]
            db.execute("UPDATE seq_counter SET reserved = ? WHERE id = 1", (last,))
            mark.settle(last)
    except (sqlite3.Error, QueueError) as exc:  # the reservation stands: still safe
        log.warning("seq mark not settled at close", **fields(path=str(mark.path),
                                                              why=str(exc)))
