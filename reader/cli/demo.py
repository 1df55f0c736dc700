"""`sukumo-reader demo`: the whole service on the virtual reader, in about a minute."""

from __future__ import annotations

import argparse
from pathlib import Path

from reader.system.i18n import _


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help=_("show the whole service on the virtual reader (about a minute)"),
        description=_("Runs the real terminal on the virtual reader with development keys: a "
                    "tour of taps (valid, duplicate, revoked, clone, expired, unregistered, "
                    "unknown issuer, torn, nursery arrival/departure) with what the citizen "
                    "hears, the queue and the city's ack. Starts a local mosquitto, a local "
                    "PostgreSQL and the city service (sukumo-city) when they are installed. "
                    "Needs no config file and touches nothing outside a temporary "
                    "directory."))
    p.add_argument("--interactive", action="store_true",
                   help=_("tap cards from the keyboard instead of the scripted tour"))
    p.add_argument("--offline", action="store_true", help=_("no broker, even if mosquitto is here"))
    p.add_argument("--dir", type=Path, default=None,
                   help=_("keep the demo's state (queue, keys, city database) in DIR"))
    p.add_argument("--pace", type=float, default=2.0, metavar="S",
                   help=_("pause between tour steps (default 2 s)"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reader.devtools.demo import run_demo

    return run_demo(workdir=args.dir, offline=args.offline, interactive=args.interactive,
                    pace_s=args.pace)
