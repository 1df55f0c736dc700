"""The seq high-water mark: the highest seq ever allocated, kept OUTSIDE the queue file.

mqtt-v1 §2: seq is never reused. The queue's own `seq_counter` dies with the queue file
(emptied, truncated, deleted, its header wrecked), so every allocation is also written,
fsynced, to `<queue file>.seq` beside it, inside the tap's transaction and before its
COMMIT: a seq the city may hold is always at or below the mark. A rolled-back append
leaves the mark one above the last committed seq, which only matters after damage (the
city then sees one number it will never get).

The file is one fixed-width line overwritten in place (`os.pwrite` of 21 bytes at
offset 0, then `fdatasync`): no allocation, so it cannot fail on a full disk, and one
write of less than a sector is not torn by a power cut on the storage a Pi uses. It is
created by write-to-temp, fsync, rename, fsync of the directory, so it is never seen
half written.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from reader.errors import QueueError
from reader.system.i18n import _

_WIDTH = 20  # digits: any 64-bit seq


def mark_path(database: Path) -> Path:
    return database.with_name(database.name + ".seq")


def _encode(seq: int) -> bytes:
    return f"{seq:0{_WIDTH}d}\n".encode()


class SeqMark:
    """The mark beside one queue file. `read()` once at opening; `advance()` per append."""

    def __init__(self, database: Path) -> None:
        self.path = mark_path(database)
        # False only where PRAGMA synchronous=OFF is set too: a benchmark preparing a
        # backlog. Never in a terminal.
        self.sync = True

    def read(self) -> tuple[int | None, str | None]:
        """(the mark, None), (None, None) when there is no mark file, or (None, why) when
        it exists but cannot be read: damage the caller raises an alarm for."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"cannot read {self.path}: {exc}"
        text = data.decode("ascii", "replace").strip()
        if not text.isdigit():
            return None, f"{self.path} holds no seq ({len(data)} bytes)"
        return int(text), None

    def write(self, seq: int) -> None:
        """Create or replace the mark atomically (at opening; never per tap)."""
        # Callers hold the queue's write lock; the pid and thread keep two apart anyway.
        tmp = self.path.with_name(
            f"{self.path.name}.tmp-{os.getpid()}-{threading.get_native_id()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                os.write(fd, _encode(seq))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise QueueError(_("cannot write the seq high-water mark {path}: {why}").format(
                path=self.path, why=exc)) from exc  # recovery's alarm: English, from exc

    def advance(self, seq: int) -> None:
        """Record that `seq` is about to be used; durable when this returns. The file is
        opened per call (an open costs microseconds, the fdatasync milliseconds): a mark
        another process replaced is never written through a stale descriptor."""
        try:
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except FileNotFoundError:  # a queue opened by a reader, never recovered
                self.write(seq)
                return
            try:
                os.pwrite(fd, _encode(seq), 0)
                if self.sync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise QueueError(_("cannot advance the seq high-water mark {path}: {why}; this tap "
                               "was not recorded").format(path=self.path, why=exc)) from None
