"""`sukumo-reader run`: the daemon (what systemd starts)."""

from __future__ import annotations

import argparse
import signal

from ..config import load_settings
from ..logs import setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the terminal daemon (waits for taps)",
                       description="Wait for taps on the configured reader, verify them, "
                                   "chime, record them and sync them to the city. Stops on "
                                   "SIGTERM/SIGINT.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    from ..daemon import Terminal

    terminal = Terminal(settings)
    # systemd stops with SIGTERM: leave the loop between taps, never inside one.
    signal.signal(signal.SIGTERM, lambda *_: terminal.stop())
    signal.signal(signal.SIGINT, lambda *_: terminal.stop())
    try:
        terminal.run()
    finally:
        terminal.close()
    return 0
