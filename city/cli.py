"""`sukumo-city`: the city's side of mqtt-v1. A thin shell: each command parses, loads the
settings once and calls one function; operator mistakes exit 2 with the key named.

    sukumo-city --config /etc/sukumo-city/city.toml migrate     # schema up to date
    sukumo-city --config ... run                                # receive, store, ack
    sukumo-city --config ... maintain                           # partitions, retention
    sukumo-city --config ... add-town 392081                    # a town's staff role
    sukumo-city --config ... gaps                               # missing seqs per terminal
    sukumo-city --config ... summary                            # per town, in one line
    sukumo-city --config ... account add NAME --muni 392081     # the fleet page's accounts
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from city import bundle_cli
from city.settings import CitySettings, load_settings, require_database
from city.web import accounts
from reader.errors import ConfigError
from reader.system import i18n
from reader.system.i18n import _
from reader.system.logs import setup_logging

if TYPE_CHECKING:
    from city.db import Store

log = logging.getLogger("city")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sukumo-city", description=_(
        "The city's side of mqtt-v1: the inbox on PostgreSQL, for many towns."))
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help=_("settings file (default /etc/sukumo-city/city.toml)"))
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help=_("bring the database schema up to date"))
    mig.add_argument("--pre", action="store_true", help=_(
        "apply only the migrations that are safe while older instances still run"))
    run = sub.add_parser("run", help=_("receive events and statuses, store, acknowledge"))
    run.add_argument("--ready-file", type=Path, help=_("written once subscribed (tests)"))
    run.add_argument("--drop-first", type=int, default=0, metavar="N", help=_(
        "drop the first N batches without storing or acknowledging them (fault injection)"))
    sub.add_parser("maintain", help=_("make next months' partitions, drop expired ones"))
    town = sub.add_parser("add-town", help=_("make the staff role of a town (town_<muni>)"))
    town.add_argument("muni", type=_muni, help=_("6-digit municipality code"))
    sub.add_parser("gaps", help=_("print the events each terminal recorded that never came"))
    sub.add_parser("summary", help=_("per town: terminals online, events stored, missing"))
    bundle_cli.register(sub)
    from city.ca.cli import register as register_ca

    register_ca(sub)
    accounts.add_parser(sub)
    return parser


def _muni(text: str) -> str:
    if not (len(text) == 6 and text.isdigit()):
        raise argparse.ArgumentTypeError(_("{text!r} is not a 6-digit municipality code "
                                           "(宿毛市: 392081)").format(text=text))
    return text


def _store(settings: CitySettings) -> Store:
    from city.db import Store

    return Store(require_database(settings), pool_size=2,
                 statement_timeout_s=settings.database.statement_timeout_s).open(wait=True)


def main(argv: list[str] | None = None) -> int:
    i18n.install()  # before the parser: argparse's own words come from the same catalog
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        setup_logging(settings.log.level, settings.log.format)
        return _dispatch(args, settings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: CitySettings) -> int:
    if args.command == "ca":  # files only: a development city's CA needs no database
        from city.ca.cli import run as run_ca

        return run_ca(args, settings)
    import psycopg
    from psycopg_pool import PoolTimeout

    from city import db

    try:
        if args.command == "migrate":
            applied = db.migrate(require_database(settings), "pre" if args.pre else "all")
            print(_("applied: {names}").format(names=", ".join(applied)) if applied
                  else _("the schema is up to date"))
            return 0
        if args.command == "run":
            from city.ca.responder import start_responder
            from city.intake import run

            responder = start_responder(settings)  # §7 renewals, when [ca] dir is set
            try:
                return run(settings, ready_file=args.ready_file, drop_first=args.drop_first)
            finally:
                if responder is not None:
                    responder.stop()
        if args.command == "bundle" and not bundle_cli.needs_database(args):
            return bundle_cli.run(args, settings, None)

        store = _store(settings)
        try:
            if args.command == "maintain":
                done = store.maintain(retention_months=settings.database.retention_months,
                                      months_ahead=settings.database.months_ahead)
                print(_("partitions made: {made}; dropped: {dropped}; events outside every "
                        "month: {outside}").format(made=", ".join(done.created) or "-",
                                                  dropped=", ".join(done.dropped) or "-",
                                                  outside=done.outside))
            elif args.command == "add-town":
                print(store.add_town(args.muni))
            elif args.command == "bundle":
                return bundle_cli.run(args, settings, store)
            elif args.command == "account":
                from city.web.store import WebStore

                return accounts.run(args, WebStore(store.pool))
            elif args.command == "summary":
                for row in store.summary():
                    print(_("{muni}: {online} of {terminals} terminal(s) online, {events} "
                            "event(s) stored, {missing} missing").format(**row))
            elif args.command == "gaps":
                holes = store.gaps()
                for h in holes:
                    print(f"{h['muni']}/{h['tid']}: seq {h['first_missing']}..{h['last_missing']}")
                print(_("{n} gap(s)").format(n=len(holes)))
                return 1 if holes else 0
        finally:
            store.close()
        return 0
    except (psycopg.OperationalError, PoolTimeout) as exc:
        print(_("cannot reach the database ({error}): check [database] dsn, that "
                "PostgreSQL runs and accepts this user").format(error=str(exc).strip()),
              file=sys.stderr)
        return 3
    except psycopg.Error as exc:
        print(_("the database refused: {error}").format(error=str(exc).strip()),
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
