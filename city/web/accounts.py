"""`sukumo-city account add|list|passwd|remove`: the fleet page's accounts.

    sukumo-city account add suzuki --muni 392081     # one town's staff
    sukumo-city account add kochi-pref --prefecture  # every town of the deployment
    sukumo-city account passwd suzuki                # ends the account's sessions
    sukumo-city account list

The password is asked twice on a terminal (never an argument: it would show in `ps` and
the shell's history), or read from one line of standard input with `--password-stdin`
(scripts, tests). Operator mistakes exit 2 with the reason, in the reader's language.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from city.web.auth import ACCOUNT_NAME, MUNI, hash_password, password_problem
from city.web.store import WebStore
from reader.errors import ConfigError
from reader.system.i18n import _


def add_parser(sub: Any) -> None:
    """The `account` command and its subcommands, on `sukumo-city`'s parser."""
    acc = sub.add_parser("account", help=_("manage the fleet page's accounts"))
    what = acc.add_subparsers(dest="account_command", required=True)
    add = what.add_parser("add", help=_("a new account for one town or the prefecture"))
    add.add_argument("name", help=_("account name: lower-case letters, digits, . _ -"))
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--muni", help=_("the town's 6-digit municipality code"))
    who.add_argument("--prefecture", action="store_true",
                     help=_("the account sees every town"))
    add.add_argument("--password-stdin", action="store_true",
                     help=_("read the password from one line of standard input"))
    pw = what.add_parser("passwd", help=_("set a new password (ends the account's sessions)"))
    pw.add_argument("name", help=_("account name"))
    pw.add_argument("--password-stdin", action="store_true",
                    help=_("read the password from one line of standard input"))
    what.add_parser("list", help=_("list the accounts and their towns"))
    rm = what.add_parser("remove", help=_("remove an account and its sessions"))
    rm.add_argument("name", help=_("account name"))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(_("New password: "))
        if getpass.getpass(_("The same password again: ")) != password:
            raise ConfigError(_("the two passwords differ; nothing changed"))
    problem = password_problem(password)
    if problem:
        raise ConfigError(_(problem))
    return password


def _name(name: str) -> str:
    if not ACCOUNT_NAME.match(name):
        raise ConfigError(_("account name {name!r}: use 2-64 lower-case letters, digits, "
                            ". _ or -, starting with a letter or digit").format(name=name))
    return name


def run(args: argparse.Namespace, store: WebStore) -> int:
    """One `account` subcommand; ConfigError (exit 2) for an operator mistake."""
    command = args.account_command
    if command == "list":
        rows = store.list_accounts()
        for name, muni, created, changed, sessions in rows:
            town = muni or _("prefecture")
            print(f"{name}\t{town}\t{created:%Y-%m-%d}\t{changed:%Y-%m-%d}\t{sessions}")
        print(_("{n} account(s)").format(n=len(rows)))
        return 0
    name = _name(args.name)
    if command == "add":
        muni = None if args.prefecture else args.muni
        if muni is not None and not MUNI.match(muni):
            raise ConfigError(_("--muni {muni!r}: a 6-digit municipality code, e.g. "
                                "392081").format(muni=muni))
        if muni is not None and not store.town_has_role(muni):
            raise ConfigError(_("town {muni} has no database role yet: run `sukumo-city "
                                "add-town {muni}` first").format(muni=muni))
        if not store.add_account(name, muni, hash_password(_password(args.password_stdin))):
            raise ConfigError(_("account {name} exists already (use `passwd` to change "
                                "its password)").format(name=name))
        print(_("account {name} added").format(name=name))
    elif command == "passwd":
        if store.account(name) is None:
            raise ConfigError(_("no account {name}").format(name=name))
        store.set_password(name, hash_password(_password(args.password_stdin)))
        print(_("password of {name} changed; its sessions ended").format(name=name))
    elif command == "remove":
        if not store.remove_account(name):
            raise ConfigError(_("no account {name}").format(name=name))
        print(_("account {name} removed").format(name=name))
    return 0
