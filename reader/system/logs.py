"""Structured logs: one JSON object per line on stdout (journald keeps them).

Call sites pass their data as `extra={"fields": {...}}`. What may appear there is
limited by policy, not by code: never a key, never card data beyond the member id
(`mid`), the card serial in hex (`sn`, the unit of revocation) and the verdict.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


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


def setup_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Route all logging to one stdout handler (idempotent: safe to call per command)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
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
