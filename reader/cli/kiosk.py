"""`sukumo-reader kiosk`: serve the kiosk screen's page on 127.0.0.1 (Chromium shows it).

Exits 0 when stopped, 3 when its feed socket was lost (systemd restarts it), 70 when one
of its threads failed (a bug: better restarted than deaf).
"""

from __future__ import annotations

import argparse
import signal
import threading

from reader.cli import EXIT_OK
from reader.config import load_settings
from reader.system.i18n import _
from reader.system.logs import setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kiosk", help=_("serve the kiosk screen on 127.0.0.1 (for Chromium in kiosk mode)"),
        description=_("Serve the page that shows each tap's result in large text, in the "
                      "terminal's language (Japanese under a Japanese locale), on "
                      "127.0.0.1:[feedback] screen_http_port (or the socket systemd passes "
                      "it). The daemon sends it each verdict and a heartbeat on the Unix "
                      "socket [feedback] screen_feed when [feedback] screen = true; without "
                      "a heartbeat the page says the terminal cannot be used. Stops on "
                      "SIGTERM/SIGINT."))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reader.kiosk.server import Kiosk

    settings = load_settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    kiosk = Kiosk(settings)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=kiosk.stop).start())
    signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=kiosk.stop).start())
    try:
        kiosk.serve()
    finally:
        kiosk.close()
    return kiosk.exit_code or EXIT_OK
