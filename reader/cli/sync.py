"""`sukumo-reader sync`: the city link alone, no card reader.

For bring-up (does this terminal reach the broker, do its bundles arrive), the sync tests
and the drain benchmark. Settings from `--config reader.toml` (as the daemon) or, for
test harnesses, `--settings-json`. SIGTERM / SIGINT stop it in order: the offline status
is published and the broker keeps the session.
"""

from __future__ import annotations

import argparse
import signal
import threading

from reader.bundles import TrustStore
from reader.cli import EXIT_OK
from reader.config import Settings, load_settings
from reader.system import i18n
from reader.system.i18n import _
from reader.system.logs import setup_logging
from reader.terminal.lock import DaemonLock


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync", help=_("the city link alone, without a reader (bring-up, benchmarks)"),
        description=_("Send the queued taps to the city and take its bundles, as the daemon's "
                    "sync thread does, with no card reader. Stops on SIGTERM/SIGINT."))
    p.add_argument("--settings-json", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # As `run`: the city link's journal stays English whatever the locale (a refused
    # bundle's log line quotes the refusal's text).
    i18n.use_english()
    settings = (Settings.model_validate_json(args.settings_json) if args.settings_json
                else load_settings(args.config))
    setup_logging(settings.log.level, settings.log.format)
    # The daemon's own MQTT client id: beside a running daemon the two would take each
    # other's connection over, so `sync` holds the daemon's lock too.
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)  # as the daemon does
    with DaemonLock.acquire(settings.paths.state_dir):
        return _sync(settings)


def _sync(settings: Settings) -> int:
    from reader.sync import CitySync  # paho only for the command that syncs

    sync = CitySync(settings, TrustStore.from_settings(settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sync.start()
    stop.wait()
    sync.stop()
    return EXIT_OK
