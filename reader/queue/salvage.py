"""Reading the events out of a queue file that was moved aside as damaged.

Every tap still readable in the damaged file is owed to the city, with its own id and
seq. Two readers, the first that works wins:

1. SQLite itself, read-only, scanning the events table by rowid (`NOT INDEXED`: a
   wrecked index must not hide intact rows). When that scan completes, its rows are
   exactly the unacknowledged events (acked ones were deleted) and nothing else is read.
2. When SQLite cannot open the file (a wrecked header) or the scan stops half way (a
   truncated file, a wrecked interior page), the file's pages are read directly: every
   table b-tree leaf page, in the file and in its committed WAL frames (a newer copy of
   a page wins), is parsed as the SQLite file format defines it, and each cell that
   decodes as an events row whose body is a §2 event with the same id and seq is taken.
   Pages the header's freelist names are skipped; when the header is unreadable a freed
   page may still hold an event the city has already acked. Sending it again is safe
   (the city keeps one copy per id, and acks it again) and is the price of losing none.

Nothing here writes to the damaged file: it is opened `mode=ro` or read as bytes.

Why not the sqlite3 shell's `.recover`: it needs the `sqlite_dbpage` virtual table,
which Debian 12's sqlite3 (3.40.1) is built without (`.recover` ends in "SQL logic
error" on any file there), and Python's sqlite3 module has no recovery API.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

from reader.system.logs import fields

log = logging.getLogger(__name__)

# seq, id, at, body, wire_bytes, boot_id, mono_ns, clock_synced, state, error, urgent
SalvagedRow = tuple[int, str, str, str, int, str, int, int, str, str | None, int]

_COLUMNS = ("seq, id, at, body, wire_bytes, boot_id, mono_ns, clock_synced, state, error")
_STATES = ("pending", "in_flight", "rejected")
_WAL_HEADER, _FRAME_HEADER = 32, 24
_LEAF_TABLE = 0x0D


def salvage_events(moved: Path) -> Iterator[SalvagedRow]:
    """Each event still readable in the damaged file `moved`, at most once per seq."""
    seen: set[int] = set()
    complete = True
    try:
        for row in _sqlite_rows(moved):
            seen.add(row[0])
            yield row
    except sqlite3.Error as exc:
        complete = False
        log.warning("damaged queue file: SQLite read stopped; reading its pages",
                    **fields(path=str(moved), read=len(seen), why=str(exc)))
    if complete:
        return
    for row in _page_rows(moved):
        if row[0] not in seen:
            seen.add(row[0])
            yield row


def _sqlite_rows(moved: Path) -> Iterator[SalvagedRow]:
    conn = sqlite3.connect(f"file:{moved}?mode=ro", uri=True, timeout=1)
    try:
        try:
            cursor = conn.execute(f"SELECT {_COLUMNS}, urgent FROM events NOT INDEXED "
                                  "ORDER BY seq")
        except sqlite3.OperationalError as exc:
            if "no such column" not in str(exc):  # a file from before schema 3
                raise
            cursor = conn.execute(f"SELECT {_COLUMNS}, 0 FROM events NOT INDEXED "
                                  "ORDER BY seq")
        while rows := cursor.fetchmany(500):
            for row in rows:
                checked = _checked(list(row))
                if checked is not None:
                    yield checked
    finally:
        conn.close()


def _checked(values: list) -> SalvagedRow | None:
    """The row if it is a plausible events row whose body is its own §2 event."""
    try:
        seq, event_id, at, body, wire_bytes, boot_id, mono_ns, synced, state, error, urgent = (
            values)
        if not (isinstance(seq, int) and seq >= 1 and isinstance(body, str)
                and isinstance(event_id, str) and state in _STATES):
            return None
        event = json.loads(body)
        if not (isinstance(event, dict) and event.get("id") == event_id
                and event.get("seq") == seq):
            return None
        return (seq, event_id, str(at), body, int(wire_bytes), str(boot_id), int(mono_ns),
                1 if synced else 0, state, error if isinstance(error, str) else None,
                1 if urgent else 0)
    except (TypeError, ValueError):
        return None


# -- the SQLite file format, read directly (https://sqlite.org/fileformat2.html) ---------


class _Pages:
    """Page number -> the newest copy of that page (file or committed WAL frame), read
    through mmap: a million-event file is not loaded into memory to be salvaged."""

    def __init__(self, data: mmap.mmap | bytes, wal: mmap.mmap | bytes, size: int) -> None:
        self.size = size
        self._at: dict[int, tuple[mmap.mmap | bytes, int]] = {
            n + 1: (data, n * size) for n in range(len(data) // size)}
        for number, offset in _wal_frames(wal, size):
            self._at[number] = (wal, offset)

    def numbers(self) -> list[int]:
        return sorted(self._at)

    def get(self, number: int) -> bytes | None:
        where = self._at.get(number)
        if where is None:
            return None
        buf, offset = where
        return bytes(buf[offset:offset + self.size])


def _page_rows(moved: Path) -> Iterator[SalvagedRow]:
    with contextlib.ExitStack() as stack:
        data = _mapped(stack, moved)
        wal = _mapped(stack, Path(f"{moved}-wal"))
        page_size, reserved, freelist = _header(data)
        if page_size is None:
            page_size = _wal_page_size(wal) or 4096  # SQLite's default page size
        pages = _Pages(data, wal, page_size)
        skip = _freelist_pages(pages, freelist, page_size) if freelist else set()
        usable = page_size - reserved
        for number in pages.numbers():
            if number in skip:
                continue
            for values in _leaf_cells(pages, number, usable):
                row = _as_events_row(values)
                if row is not None:
                    yield row


def _mapped(stack: contextlib.ExitStack, path: Path) -> mmap.mmap | bytes:
    try:
        fh = stack.enter_context(path.open("rb"))
        if os.fstat(fh.fileno()).st_size == 0:
            return b""
        return stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    except OSError:
        return b""


def _header(data: mmap.mmap | bytes) -> tuple[int | None, int, int]:
    """(page size, reserved bytes per page, first freelist trunk page) from a sane header."""
    if len(data) < 100 or data[:16] != b"SQLite format 3\x00":
        return None, 0, 0
    size = struct.unpack(">H", data[16:18])[0]
    size = 65536 if size == 1 else size
    if size < 512 or size & (size - 1):
        return None, 0, 0
    return size, data[20], struct.unpack(">I", data[32:36])[0]


def _wal_page_size(wal: mmap.mmap | bytes) -> int | None:
    if len(wal) < _WAL_HEADER or wal[:4] not in (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"):
        return None
    size = struct.unpack(">I", wal[8:12])[0]
    return size if size >= 512 and not size & (size - 1) else None


def _wal_frames(wal: mmap.mmap | bytes, page_size: int) -> list[tuple[int, int]]:
    """(page number, offset of its content) of each frame of a committed transaction."""
    if _wal_page_size(wal) != page_size:
        return []
    salt = wal[16:24]
    committed: list[tuple[int, int]] = []
    pending: list[tuple[int, int]] = []
    offset = _WAL_HEADER
    while offset + _FRAME_HEADER + page_size <= len(wal):
        number, commit_size = struct.unpack(">II", wal[offset:offset + 8])
        if wal[offset + 8:offset + 16] != salt:
            break  # frames of an earlier WAL generation
        pending.append((number, offset + _FRAME_HEADER))
        if commit_size:
            committed += pending
            pending = []
        offset += _FRAME_HEADER + page_size
    return committed


def _freelist_pages(pages: _Pages, trunk: int, page_size: int) -> set[int]:
    free: set[int] = set()
    while trunk and trunk not in free and (page := pages.get(trunk)) is not None:
        free.add(trunk)
        count = min(struct.unpack(">I", page[4:8])[0], (page_size - 8) // 4)
        free.update(struct.unpack(f">{count}I", page[8:8 + 4 * count]))
        trunk = struct.unpack(">I", page[0:4])[0]
    return free


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        byte = buf[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise IndexError  # unreachable


def _leaf_cells(pages: _Pages, number: int, usable: int) -> Iterator[list]:
    page = pages.get(number)
    base = 100 if number == 1 else 0
    if page is None or len(page) < base + 8 or page[base] != _LEAF_TABLE:
        return
    cells = struct.unpack(">H", page[base + 3:base + 5])[0]
    for i in range(cells):
        try:
            at = struct.unpack(">H", page[base + 8 + 2 * i:base + 10 + 2 * i])[0]
            size, pos = _varint(page, at)
            rowid, pos = _varint(page, pos)
            payload = _payload(pages, page, pos, size, usable)
            values = _record(payload) if payload is not None else None
        except (IndexError, struct.error, UnicodeDecodeError):
            continue
        if values:
            yield [rowid, *values[1:]]


def _payload(pages: _Pages, page: bytes, pos: int, size: int,
             usable: int) -> bytes | None:
    limit = usable - 35
    if size <= limit:
        return page[pos:pos + size]
    least = (usable - 12) * 32 // 255 - 23
    local = least + (size - least) % (usable - 4)
    local = local if local <= limit else least
    parts = [page[pos:pos + local]]
    got, overflow = local, struct.unpack(">I", page[pos + local:pos + local + 4])[0]
    while got < size:
        nxt = pages.get(overflow)
        if nxt is None:
            return None  # the rest of a large body is gone
        chunk = nxt[4:4 + min(usable - 4, size - got)]
        parts.append(chunk)
        got += len(chunk)
        overflow = struct.unpack(">I", nxt[0:4])[0]
    return b"".join(parts)


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> list | None:
    header_size, pos = _varint(payload, 0)
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    body = header_size
    values: list = []
    for serial in types:
        if serial in (0, 8, 9):
            values.append(None if serial == 0 else serial - 8)
        elif serial in _INT_SIZES:
            width = _INT_SIZES[serial]
            values.append(int.from_bytes(payload[body:body + width], "big", signed=True))
            body += width
        elif serial == 7:
            values.append(struct.unpack(">d", payload[body:body + 8])[0])
            body += 8
        elif serial >= 12:
            width = (serial - 12) // 2
            raw = payload[body:body + width]
            values.append(raw.decode() if serial % 2 else raw)
            body += width
        else:
            return None  # 10, 11: reserved, not a record
    return values if body <= len(payload) else None


def _as_events_row(values: list) -> SalvagedRow | None:
    # The record of an events row: the seq (rowid) first, then the columns in table
    # order; `urgent` exists from schema 3 on (a row written before has 12 values).
    if len(values) < 12:  # a later schema may add columns after `urgent`
        return None
    urgent = values[12] if len(values) > 12 else 0
    return _checked([values[0], *values[1:9], values[11], urgent])
