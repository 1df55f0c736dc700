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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reader.cli import EXIT_FAILED, EXIT_OK
from reader.config import load_settings
from reader.system import codes, plain
from reader.system.i18n import N_, _, display_width
from reader.wire.status import PACKET_TOO_LARGE

FRESH_S = 10.0  # five missed rewrites: the daemon is wedged or gone


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help=_("what the daemon is doing now: reader, last tap, queue, sync"),
        description=_("Reads the daemon's status file (<state_dir>/status.json). Exit 0 when "
                    "the daemon is running, 1 when it is not (or its status is stale)."))
    p.add_argument("--json", action="store_true",
                   help=_('print {"running": bool, "why": str, "status": {...} | null}'))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    running, why, status = read_status(settings.paths.status_file)
    if args.json:  # for programs: the same English whatever the locale
        print(json.dumps({"running": running, "why": said(why, str), "status": status},
                         indent=2, ensure_ascii=False))
    else:
        print(render(running, said(why), status))
    return EXIT_OK if running else EXIT_FAILED


# Why the daemon counts as running or not: a marked message and its placeholders.
Why = tuple[str, dict[str, object]]


def said(why: Why, translate: Callable[[str], str] = _) -> str:
    """In the reader's words, or (`translate=str`, for --json) the English original with
    the system's own text."""
    words = {k: plain.os_words(v) if isinstance(v, OSError) and translate is _ else v
             for k, v in why[1].items()}
    return translate(why[0]).format(**words)


def read_status(path: Path, now: dt.datetime | None = None
                ) -> tuple[bool, Why, dict[str, Any] | None]:
    """(running, why, the daemon's last status or None)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return False, (N_("no status file at {path}: the daemon has not run here"),
                       {"path": path}), None
    except OSError as exc:
        return False, (N_("cannot read {path}: {error}"), {"path": path, "error": exc}), None
    except ValueError as exc:
        plain.keep(exc, path=path)
        return False, (N_("{path} is not the daemon's status (damaged?); it is rewritten "
                          "within seconds while the daemon runs"), {"path": path}), None
    pid = status.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return False, (N_("the daemon (pid {pid}) is not running"), {"pid": pid}), status
    age = (now - _parse_time(status.get("updated_at"))).total_seconds()
    if age > FRESH_S:
        return False, (N_("pid {pid} is alive but its status is {age} s old (wedged?)"),
                       {"pid": pid, "age": f"{age:.0f}"}), status
    return True, (N_("running (pid {pid}, since {since})"),
                  {"pid": pid, "since": status.get("started_at", "?")}), status


_LABELS = (N_("daemon"), N_("mode"), N_("reader"), N_("audio"), N_("last tap"), N_("queue"),
           N_("sync"), N_("versions"), N_("ALARM"), N_("WARNING"))


def render(running: bool, why: str, status: dict[str, Any] | None) -> str:
    # Values (modes, times, versions) are the daemon's own words, states and reasons are
    # said in words (reader/system/codes.py; their codes are in --json); labels and
    # sentences are the reader's language, in columns as wide as the widest label.
    pad = max(10, *(display_width(_(label)) + 2 for label in _LABELS))

    def row(label: str, text: str) -> str:
        return _(label) + " " * (pad - display_width(_(label))) + text

    lines = [row("daemon", why)]
    if status is None:
        return "\n".join(lines)
    tap = status.get("last_tap")
    queue = status.get("queue") or {}
    sync = status.get("sync") or {}
    versions = status.get("versions") or {}
    last_tap = (f"{tap.get('at')} {codes.said('result', tap.get('result'))}"
                + (_(" ({reason})").format(reason=codes.said("reason", tap["reason"]))
                   if tap.get("reason") else "")
                + (f" mid {tap['mid']}" if tap.get("mid") else "")) if tap else _("none")
    queued = _("{pending} pending, {in_flight} in flight, {rejected} rejected, oldest "
               "{oldest}, last seq {last_seq}, {size}").format(
        pending=queue.get("pending", "?"), in_flight=queue.get("in_flight", "?"),
        rejected=queue.get("rejected", "?"), oldest=queue.get("oldest_at") or "-",
        last_seq=queue.get("last_seq", "?"), size=_size(queue.get("db_bytes")))
    if queue.get("over_warn"):
        queued += _(" (OVER WARNING SIZE)")
    link = codes.said("sync", sync.get("state", "?")) + (f", MQTT {sync['protocol']}"
                                                    if sync.get("protocol") else "")
    link += _(", last ack {at}").format(at=sync.get("last_ack_at") or _("never"))
    if sync.get("cert"):  # the client certificate in force (renewed over the air, §7)
        link += _(", certificate valid until {date}").format(
            date=str(sync["cert"].get("not_after") or "?")[:10])
    lines += [
        row("mode", f"{status.get('mode', '?')}"),
        row("reader", codes.said("reader", status.get("reader", "?"))),
        row("audio", codes.said("audio", status.get("audio", "?"))),
        row("last tap", last_tap),
        row("queue", queued),
        row("sync", link),
        row("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]
    alarms = status.get("alarms") or []
    lines += [row("ALARM", str(alarm)) for alarm in alarms]
    if alarms:  # also in the status the city receives, until cleared
        lines.append(" " * pad + _("(details: `sukumo-reader queue summary`; once the city "
                                   "is told: `sukumo-reader queue clear-alarms`)"))
    lines += [row("WARNING", _problem(problem, sync)) for problem in sync.get("problems") or []]
    if not running:
        lines.append(_("(the values above are the last the daemon wrote)"))
    return "\n".join(lines)


def _problem(problem: str, sync: dict[str, Any]) -> str:
    """A link problem (an English wire value, reader/wire/status.py) as the reader says it."""
    if problem == PACKET_TOO_LARGE:
        return _("the broker's maximum packet size ({limit} bytes now) is too small for "
                 "our batches, or it closed the link for one: check the broker's limit and "
                 "[mqtt] broker_max_packet_bytes; taps stay queued meanwhile").format(
                     limit=sync.get("packet_limit"))
    return codes.said("problem", problem)


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
    return _("db {kib} KiB").format(kib=f"{n / 1024:.0f}") if isinstance(n, int | float) \
        else _("db ?")
