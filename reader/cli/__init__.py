"""The `sukumo-reader` command: one parser, one module per command.

Each command module in COMMANDS has `register(subparsers) -> None`, which adds its
sub-parser and sets `func=run`, and `run(args) -> int` (the exit code). The logic lives
in testable functions elsewhere; these modules only parse and print.

Exit codes mean the same everywhere: 0 ok, 1 a check failed / not found, 2 bad usage or
configuration, 3 the environment is missing something (reader, broker, device),
70 an internal error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from reader import __version__
from reader.errors import ConfigError, ReaderBusyError, SukumoError, TerminalBusyError
from reader.system import i18n, plain
from reader.system.i18n import _

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 70

# command module names under reader.cli, in --help order
COMMANDS = [
    "run",
    "demo",
    "tap",
    "readers",
    "queue",
    "sound",
    "bundle",
    "provision",
    "doctor",
    "status",
    "config",
    "issue_card",
    "sync",
    "kiosk",
]
# Commands that log to their own journal (setup_logging) rather than through plain's.
DAEMONS = {"run", "sync", "kiosk", "demo"}


def sudo_command(argv: list[str]) -> str:
    """The command line as the person typed it, to be run as root."""
    import shlex

    return "sudo " + shlex.join(["sukumo-reader", *argv])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with command module `only` alone."""
    parser = argparse.ArgumentParser(
        prog="sukumo-reader",
        description=(
            _("Card-reader terminal of the Sukumo City ID service (宿毛ID). Reads the city "
            "application on a tapped card, verifies it locally, chimes, records the tap "
            "durably and syncs it to the city.")),
        epilog=_("Settings: /etc/sukumo-reader/reader.toml (or --config), overridden by "
               "SUKUMO_READER_<SECTION>__<KEY> environment variables."),
    )
    # argparse's own default help of --version is fixed at import: give it through _().
    parser.add_argument("--version", action="version", version=f"sukumo-reader {__version__}",
                        help=_("show program's version number and exit"))
    parser.add_argument("--config", type=Path, default=None,
                        help=_("settings file (default /etc/sukumo-reader/reader.toml)"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    _accept_config_anywhere(sub)
    return parser


def _accept_config_anywhere(sub: argparse._SubParsersAction) -> None:
    """`sukumo-reader run --config FILE` works like `sukumo-reader --config FILE run`.

    Technicians type the option after the command; SUPPRESS keeps the top-level value
    when the option is not repeated there."""
    for command in sub.choices.values():
        if "--config" not in command._option_string_actions:
            command.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                                 help=_("settings file (as before the command)"))
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_config_anywhere(action)


def _named_command(argv: list[str]) -> str | None:
    """The command module the command line names, if any. Only that one is imported:
    importing them all (sqlite-utils, x509, ...) cost the daemon 0.3 s of its start-up
    (scripts/bench, startup_s). None (e.g. --help) builds the full parser."""
    after_config = False
    for arg in argv:
        if after_config or arg.startswith("-"):
            after_config = arg == "--config"
            continue
        name = arg.replace("-", "_")
        return name if name in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    i18n.install()  # before the parser: argparse's own words come from the same catalog
    parser = build_parser(_named_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if args.command not in DAEMONS:
        plain.to_journal()
    try:
        return int(args.func(args) or 0)
    except TerminalBusyError as exc:
        # `run` and `sync` speak English for the journal; this refusal is for the person
        # who typed the command while the service runs (unless it goes to the journal).
        from reader.system.logs import is_journal_stream
        from reader.terminal.lock import busy_message
        from reader.transports import claim

        if not is_journal_stream(sys.stderr):
            i18n.install()
        error = (claim.busy_message(exc.pid, exc.reader) if isinstance(exc, ReaderBusyError)
                 else busy_message(exc.pid, Path(str(exc.state_dir))))
        print(_("sukumo-reader: {error}").format(error=error), file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(_("sukumo-reader: {error}").format(error=exc), file=sys.stderr)
        return EXIT_USAGE
    except SukumoError as exc:
        print(_("sukumo-reader: {error}").format(error=exc), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a file or directory the operator must fix, not a bug
        print(_("sukumo-reader: cannot use {path}: {reason}").format(
            path=exc.filename or "?", reason=plain.os_words(exc)), file=sys.stderr)
        if plain.denied(exc):  # a technician outside the sukumo group, or a command for root
            print(_("  run it as root: {command}\n  (read-only commands work without sudo "
                    "for members of the sukumo group: docs/technician.md)").format(
                command=sudo_command(sys.argv[1:] if argv is None else argv)), file=sys.stderr)
        else:
            print(_("  check the path in the settings; the service user owns the state "
                    "directory"), file=sys.stderr)
        return EXIT_ENVIRONMENT
    except Exception:  # a bug: say so plainly, with the traceback for the developers
        traceback.print_exc()
        print(_("sukumo-reader: internal error (a bug); the traceback is above"),
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
