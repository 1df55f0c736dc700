"""`sukumo-reader run`: the daemon (what systemd starts)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import signal

from reader.config import DEFAULT_CONFIG_PATH, load_settings
from reader.errors import ConfigError
from reader.system import i18n
from reader.system.i18n import _
from reader.system.logs import setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help=_("run the terminal daemon (waits for taps)"),
                       description=_("Wait for taps on the configured reader, verify them, "
                                   "chime, record them and sync them to the city. Stops on "
                                   "SIGTERM/SIGINT."))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The daemon speaks English whatever the locale: firmware_config/locale sets
    # ja_JP.UTF-8 system-wide and systemd hands it to the service, but the journal stays
    # English and structured (what people search), and so does a refusal to start (it
    # lands in the journal too). `config show` and `doctor` explain the same mistakes in
    # the technician's language.
    i18n.use_english()
    settings = load_settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    from reader.terminal.daemon import Terminal

    try:
        terminal = Terminal(settings)
    except ConfigError as exc:
        # The terminal checks what it needs to run (the root key, the mode); only here is
        # it known which file the technician must fix.
        path = args.config or DEFAULT_CONFIG_PATH
        where = _("config file {path}").format(path=path) if path.exists() else \
            _("no config file (defaults)")
        raise ConfigError(_("{error} [{where}]").format(error=exc, where=where)) from None
    _release_startup_memory()
    # systemd stops with SIGTERM: leave the loop between taps, never inside one.
    signal.signal(signal.SIGTERM, lambda *_: terminal.stop())
    signal.signal(signal.SIGINT, lambda *_: terminal.stop())
    try:
        terminal.run()
    finally:
        terminal.close()
    return 0


def _release_startup_memory() -> None:
    """Give the kernel back the heap that start-up used and freed (imports, settings
    validation): glibc keeps it otherwise, ~5 MB of an idle terminal's 59 MB RSS
    (scripts/bench, rss_mb_idle)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)
