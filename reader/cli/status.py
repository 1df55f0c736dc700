"""`sukumo-reader status`: what the running daemon is doing now, from its status.json.

The daemon rewrites `<state_dir>/status.json` atomically every ~2 s and on change, so
this command needs no socket and works on a read-only root: the daemon counts as running
when its pid is alive and the file is fresh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from reader.cli import EXIT_FAILED, EXIT_OK
from reader.config import load_settings

FRESH_S = 10.0  # five missed rewrites: the daemon is wedged or gone


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="what the daemon is doing now: reader, last tap, queue, sync",
        description="Reads the daemon's status file (<state_dir>/status.json). Exit 0 when "
                    "the daemon is running, 1 when it is not (or its status is stale).")
    p.add_argument("--json", action="store_true",
                   help='print {"running": bool, "why": str, "status": {...} | null}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    running, why, status = read_status(settings.paths.status_file)
    if args.json:
        print(json.dumps({"running": running, "why": why, "status": status},
                         indent=2, ensure_ascii=False))
    else:
        print(render(running, why, status))
    return EXIT_OK if running else EXIT_FAILED


def read_status(path: Path, now: dt.datetime | None = None
                ) -> tuple[bool, str, dict[str, Any] | None]:
    """(running, why, the daemon's last status or None)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"no status file at {path}: the daemon has not run here", None
    except (OSError, ValueError) as exc:
        return False, f"cannot read {path}: {exc}", None
    pid = status.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return False, f"the daemon (pid {pid}) is not running", status
    age = (now - _parse_time(status.get("updated_at"))).total_seconds()
    if age > FRESH_S:
        return False, f"pid {pid} is alive but its status is {age:.0f} s old (wedged?)", status
    return True, f"running (pid {pid}, since {status.get('started_at', '?')})", status


def render(running: bool, why: str, status: dict[str, Any] | None) -> str:
    lines = [f"daemon    {why}"]
    if status is None:
        return "\n".join(lines)
    tap = status.get("last_tap")
    queue = status.get("queue") or {}
    sync = status.get("sync") or {}
    versions = status.get("versions") or {}
    lines += [
        f"mode      {status.get('mode', '?')}",
        f"reader    {status.get('reader', '?')}",
        f"audio     {status.get('audio', '?')}",
        "last tap  " + (f"{tap.get('at')} {tap.get('result')}"
                        + (f" ({tap['reason']})" if tap.get("reason") else "")
                        + (f" mid {tap['mid']}" if tap.get("mid") else "") if tap else "none"),
        f"queue     {queue.get('pending', '?')} pending, {queue.get('in_flight', '?')} in flight, "
        f"{queue.get('rejected', '?')} rejected, oldest {queue.get('oldest_at') or '-'}, "
        f"last seq {queue.get('last_seq', '?')}, {_size(queue.get('db_bytes'))}"
        + (" (OVER WARNING SIZE)" if queue.get("over_warn") else ""),
        f"sync      {sync.get('state', '?')}, last ack {sync.get('last_ack_at') or 'never'}",
        "versions  " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    alarms = status.get("alarms") or []
    lines += [f"ALARM     {alarm}" for alarm in alarms]
    if alarms:  # also in the status the city receives, until cleared
        lines.append("          (details: `sukumo-reader queue summary`; once the city is told: "
                     "`sukumo-reader queue clear-alarms`)")
    if not running:
        lines.append("(the values above are the last the daemon wrote)")
    return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by the service user
    return True


def _parse_time(value: object) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _size(n: object) -> str:
    return f"db {n / 1024:.0f} KiB" if isinstance(n, int | float) else "db ?"
