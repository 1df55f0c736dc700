"""Structured logs: one JSON object per line on stdout (journald keeps them).

Under systemd (stdout is the journal stream named by $JOURNAL_STREAM) each line starts
with its sd-daemon(3) priority, "<4>" for a warning, "<3>" for an error: journald strips
the prefix and files the line at that level, so `journalctl -p warning` finds warnings
while the JSON with every structured field stays the message. Anywhere else (a terminal,
a pipe, a file) the lines are plain JSON, as before.

Call sites pass their data as `extra={"fields": {...}}`. What may appear there is
limited by policy, not by code: never a key, never card data beyond the member id
(`mid`), the card serial in hex (`sn`, the unit of revocation) and the verdict.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {tail}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def syslog_priority(levelno: int) -> int:
    """sd-daemon(3) / syslog(3) priority of a logging level: 2 crit ... 7 debug."""
    for floor, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                            (logging.INFO, 6)):
        if levelno >= floor:
            return priority
    return 7


class JournalPrefixFormatter(logging.Formatter):
    """Another formatter's lines, each with the record's "<N>" priority prefix (every line:
    a text-format traceback must not drop to the stream's default priority halfway)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def is_journal_stream(stream: Any) -> bool:
    """True when `stream` is the journal stream systemd gave this service (systemd.exec(5):
    JOURNAL_STREAM is "device:inode" of it). A child whose output was redirected inherits
    the variable but not the stream, so the file's identity is compared, not the variable."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False  # no file descriptor (a StringIO in tests), or a closed one
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route all logging to one stdout handler (idempotent: safe to call per command)."""
    out = stream or sys.stdout
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    if is_journal_stream(out):
        formatter = JournalPrefixFormatter(formatter)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries stay quiet unless DEBUG is asked for: nfcpy logs every ISO-DEP
    # retry of a card already gone (our own log says it once), paho every reconnect.
    quiet = {"nfc": logging.ERROR, "paho": logging.WARNING}
    for name, floor in quiet.items():
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else floor)


def fields(**kw: Any) -> dict[str, Any]:
    """`log.info("tap", **fields(mid=..., reason=...))` reads better than nested dicts."""
    return {"extra": {"fields": kw}}


K = TypeVar("K", bound=Hashable)


class Repeats(Generic[K]):
    """Lets `burst` log lines per key through in each `window_s`, and counts the rest.

    A clone card left on the reader, or a child tapping in a loop, writes the same line
    per tap: at 20 taps/s a 303-byte line fills a 64 MB journal in three hours and takes
    the month of history before it along. Every tap is still recorded in the queue; the
    journal keeps the first lines of each window and one `due()` summary of how many it
    left out. Keys are few and short-lived (a member's pseudonym and a verdict); at most
    `keys` are remembered, the oldest forgotten first."""

    def __init__(self, burst: int = 5, window_s: float = 300.0, keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self._keys, self._clock = burst, window_s, keys, clock
        self._seen: OrderedDict[K, list[float]] = OrderedDict()  # start, n, left out

    def admit(self, key: K) -> bool:
        """True when the line for `key` is to be written now."""
        now = self._clock()
        entry = self._seen.get(key)
        # A window that ended with lines left out stays until due() has said so.
        if entry is None or (now - entry[0] >= self.window_s and not entry[2]):
            entry = self._seen[key] = [now, 0, 0]
            if len(self._seen) > self._keys:
                self._seen.popitem(last=False)
        self._seen.move_to_end(key)
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        return False

    def due(self, every: bool = False) -> list[tuple[K, int]]:
        """(key, lines left out) of each window that has ended (`every`: all, at exit);
        those windows start again."""
        now, out = self._clock(), []
        for key, entry in list(self._seen.items()):
            if every or now - entry[0] >= self.window_s:
                if entry[2]:
                    out.append((key, int(entry[2])))
                del self._seen[key]
        return out
