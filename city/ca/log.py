"""The CA's record of every issuance and revocation: an append-only JSON-lines file.

Why a file and not a table: the CA must work for a development city with no PostgreSQL,
and on the offline machine that holds the root; the log lives beside the key it speaks
for, so a CA directory copied to a backup is complete. Each record is one line written
with one write() to a file opened O_APPEND and fsynced before the certificate or the CRL
leaves the tool, so a crash leaves at most a torn last line, which `records()` skips and
names (it never was answered). Nothing ever rewrites a line: a revocation is a new line.

Writers serialise on an flock of `lock` (issuing and revoking from the CLI and from the
city service's renewal answers at once); `CaLock(timeout)` raises `CaBusy` when another
writer holds it, which the renewal answer turns into mqtt-v1 §7 `busy`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reader.system.logs import fields

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
LOCK_FILE = "lock"


class CaBusy(Exception):
    """Another process holds the CA's lock."""


@dataclass(frozen=True)
class Issued:
    """One certificate as the log knows it, with its revocation if any."""

    serial: str  # lowercase hex
    tid: str
    muni: str
    not_before: dt.datetime
    not_after: dt.datetime
    at: str
    req: str | None = None
    revoked_at: str | None = None
    reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class CaLog:
    def __init__(self, ca_dir: Path) -> None:
        self.path = ca_dir / LOG_FILE
        self._lock_path = ca_dir / LOCK_FILE

    @contextlib.contextmanager
    def locked(self, timeout: float = 10.0) -> Iterator[None]:
        """Exclusive use of the CA (serial uniqueness, log order). CaBusy after `timeout`."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CaBusy(str(self._lock_path)) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)  # one write: O_APPEND puts it whole at the end
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                # Only a crash mid-write makes one (the last line); it was never answered.
                log.warning("CA log: unreadable line skipped",
                            **fields(file=str(self.path), line=number))
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def issued(self) -> list[Issued]:
        """Every certificate issued, oldest first, each with its revocation if any."""
        certs: dict[str, Issued] = {}
        revoked: dict[str, dict[str, Any]] = {}
        for r in self.records():
            if r.get("op") == "issue":
                certs[r["serial"]] = Issued(
                    serial=r["serial"], tid=r["tid"], muni=r["muni"],
                    not_before=_parse_time(r["not_before"]),
                    not_after=_parse_time(r["not_after"]), at=r["at"], req=r.get("req"))
            elif r.get("op") == "revoke":
                revoked.setdefault(r["serial"], r)
        return [
            Issued(**{**c.__dict__, "revoked_at": revoked[s]["at"],
                      "reason": revoked[s].get("reason")}) if s in revoked else c
            for s, c in certs.items()
        ]

    def certificate_pem(self, serial: str) -> str | None:
        for r in self.records():
            if r.get("op") == "issue" and r.get("serial") == serial:
                return str(r["cert"])
        return None
