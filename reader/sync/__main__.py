"""`python -m reader.sync`: the city link alone, no card reader.

For bring-up (does this terminal reach the broker, do its bundles arrive), the sync tests
and the drain benchmark. Settings from `--config reader.toml` (as the daemon) or, for
test harnesses, `--settings-json`. SIGTERM / SIGINT stop it in order: the offline status
is published and the broker keeps the session.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import ConfigError
from ..logs import setup_logging
from ..trust import TrustStore
from .client import CitySync


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reader.sync", description=__doc__)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--settings-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = (Settings.model_validate_json(args.settings_json) if args.settings_json
                    else load_settings(args.config))
        if not settings.verify.root_public_key:
            raise ConfigError("setting verify.root_public_key is empty: provision first")
    except ConfigError as exc:
        print(f"reader.sync: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log.level, settings.log.format)
    trust = TrustStore(bytes.fromhex(settings.verify.root_public_key), settings.terminal.muni,
                       settings.terminal.id, settings.paths.bundle_dir)
    trust.load_persisted()
    sync = CitySync(settings, trust, lambda: {"reader": "none"})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sync.start()
    stop.wait()
    sync.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
