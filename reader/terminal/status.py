"""status.json: the daemon's status where `sukumo-reader status` and doctor read it."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from reader.system.logs import fields
from reader.wire.event import rfc3339_ms
from reader.wire.status import TerminalStatus

log = logging.getLogger(__name__)


def write_status(path: Path, status: TerminalStatus | None, *, running: bool,
                 problem: dict[str, Any] | None = None) -> None:
    """Write the status (or, when it could not be gathered, `problem`) atomically."""
    data = (status.to_json(running=running) if status is not None else
            {**(problem or {}), "updated_at": rfc3339_ms(int(time.time() * 1000)),
             "running": running})
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1))
        os.replace(tmp, path)  # readers never see half a file; no fsync: it is rewritten anyway
    except OSError as exc:
        log.warning("status file not written", **fields(path=str(path), why=str(exc)))
