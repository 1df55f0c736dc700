"""`sukumo-reader queue`: what is waiting to reach the city, for the technician.

    queue [summary] [--json]                     counts, oldest, size, alarms
    queue list [--state S] [--limit N] [--json]  events in seq order
    queue export --format jsonl|csv [--state S] [-o FILE]
    queue clear-alarms                           after the technician has dealt with them

Safe next to a running daemon: it opens its own connection, never moves a corrupt file
aside (it reports it; the daemon does that at its next start) and never creates a
database where there is none.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reader.cli import EXIT_OK
from reader.config import Settings, load_settings
from reader.queue import STATES, EventQueue
from reader.queue.export import list_header, list_line, summary_text, write_csv, write_jsonl
from reader.system.i18n import _

STATE_CHOICES = [*STATES, "unacked"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "queue", help=_("show, list and export the events waiting for the city"),
        description=_("The durable event queue: every recorded tap stays here until the city "
                    "acknowledges it. Without an action, prints the summary."))
    # dest differs from the sub-commands' --json: argparse lets a sub-parser's default
    # overwrite a value the parent already parsed.
    p.add_argument("--json", dest="summary_json", action="store_true",
                   help=_("summary as JSON"))
    p.set_defaults(func=run, json=False)
    actions = p.add_subparsers(dest="queue_action", metavar="ACTION")

    summary = actions.add_parser("summary", help=_("pending, in flight, oldest, rejected, size"))
    summary.add_argument("--json", action="store_true", help=_("print the summary as JSON"))

    listing = actions.add_parser("list", help=_("the events, oldest first"))
    listing.add_argument("--state", choices=STATE_CHOICES,
                         help=_("only events in this state (`unacked` = `pending` + `in_flight`)"))
    listing.add_argument("--limit", type=int, default=None, metavar="N",
                         help=_("at most N events"))
    listing.add_argument("--json", action="store_true", help=_("one JSON object per line"))

    export = actions.add_parser("export", help=_("write the events as JSON lines or CSV"))
    export.add_argument("--format", choices=["jsonl", "csv"], required=True,
                        help=_("jsonl: every field, one event per line; csv: for a spreadsheet"))
    export.add_argument("--state", choices=STATE_CHOICES, help=_("only events in this state"))
    export.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                        help=_("write to FILE instead of standard output"))

    actions.add_parser("clear-alarms",
                       help=_("forget the alarms shown in the summary (moved-aside files stay)"))


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    with _open_queue(settings) as queue:
        action = args.queue_action or "summary"
        if action == "summary":
            summary = queue.summary()
            if args.json or args.summary_json:
                print(json.dumps({"database": str(queue.path), **summary.as_dict()},
                                 ensure_ascii=False, indent=2))
            else:
                print(summary_text(summary, path=queue.path, warn_mb=settings.queue.warn_mb,
                                   budget_mb=settings.queue.budget_mb))
        elif action == "list":
            events = queue.iter_events(args.state, args.limit)
            if args.json:
                write_jsonl(events, sys.stdout)
            else:
                print(list_header())
                for event in events:
                    print(list_line(event))
        elif action == "export":
            _export(queue, args.format, args.state, args.output)
        elif action == "clear-alarms":
            if not os.access(queue.path, os.W_OK):  # said as the sudo to run (cli/__init__)
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(queue.path))
            print(_("cleared {n} alarm(s)").format(n=queue.clear_alarms()))
    return EXIT_OK


@contextmanager
def _open_queue(settings: Settings) -> Iterator[EventQueue]:
    queue = EventQueue.open(settings.paths.database, warn_mb=settings.queue.warn_mb,
                            budget_mb=settings.queue.budget_mb, on_corrupt="raise",
                            create=False)
    try:
        yield queue
    finally:
        queue.close()


def _export(queue: EventQueue, fmt: str, state: str | None, output: Path | None) -> None:
    write = write_jsonl if fmt == "jsonl" else write_csv
    events = queue.iter_events(state)
    if output is None:
        write(events, sys.stdout)
        return
    # newline="": the csv module writes its own \r\n line ends.
    with output.open("w", encoding="utf-8", newline="") as fh:
        count = write(events, fh)
    print(_("exported {n} event(s) to {where}").format(n=count, where=output), file=sys.stderr)
