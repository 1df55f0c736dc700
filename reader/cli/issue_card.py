"""`sukumo-reader issue-card`: development cards for the virtual reader.

`issue-card init DIR` makes a throw-away development issuer (root, issuer and ops
keys) with its signed trust and denylist bundles; `issue-card new DIR ...` writes a
virtual card as a `*.card` file, which a terminal with `[reader] virtual_feed` takes
as a tap. Never for production: the root printed here must not be pinned in the field.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from reader.emulator.card import CardFaults
from reader.emulator.issuer import DevIssuer, clone_of, foreign_card


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("issue-card", help="development cards and bundles for the virtual reader",
                       description=__doc__)
    cmds = p.add_subparsers(dest="issue_command", required=True, metavar="SUBCOMMAND")
    init = cmds.add_parser("init", help="make a development issuer and its bundles in DIR")
    init.add_argument("dir", type=Path,
                      help="where to keep the development issuer's keys (created)")
    new = cmds.add_parser("new", help="write one virtual card (a *.card file)")
    new.add_argument("dir", type=Path, help="the directory given to `init`")
    new.add_argument("--mid", default="SK-DEV-0001", help="member id (default SK-DEV-0001)")
    new.add_argument("--sn", default=None, help="card serial, 16 hex digits (default random)")
    new.add_argument("--ap", choices=("member", "nursery"), default="member",
                     help="the card application: member (default) or nursery")
    new.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                     help="record attribute, e.g. senior=true, birth_year=1948 (repeatable)")
    kind = new.add_mutually_exclusive_group()
    kind.add_argument("--expired", action="store_true", help="a card that expired yesterday")
    kind.add_argument("--clone", action="store_true", help="the record on a chip without its key")
    kind.add_argument("--unregistered", action="store_true",
                      help="a My Number Card without the city application")
    new.add_argument("--torn-after", type=int, default=None, metavar="N",
                     help="the card leaves the field after N APDUs")
    new.add_argument("--hold", type=float, default=0.0, metavar="S",
                     help="keep the card on the virtual reader for S seconds")
    new.add_argument("-o", "--output", type=Path, default=None,
                     help="where to write the card (default: print it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.issue_command == "init":
        return _init(args.dir)
    return _new(args)


def _init(directory: Path) -> int:
    issuer = DevIssuer.generate()
    issuer.save(directory)
    (directory / "trust.cbor").write_bytes(issuer.trust_bundle(1))
    (directory / "denylist.cbor").write_bytes(issuer.denylist_bundle(1))
    print(f"development issuer written to {directory} (DEVELOPMENT KEYS: never in the field)")
    print(f"pin in reader.toml:  [verify] root_public_key = \"{issuer.root_public_hex}\"")
    print(f"then:  sukumo-reader bundle import {directory / 'trust.cbor'}")
    print(f"       sukumo-reader bundle import {directory / 'denylist.cbor'}")
    return 0


def _attr_value(text: str) -> bool | int | str:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def _new(args: argparse.Namespace) -> int:
    issuer = DevIssuer.load(args.dir)
    if args.unregistered:
        card = foreign_card()
    else:
        attr = {}
        for item in args.attr:
            key, _, value = item.partition("=")
            attr[key] = _attr_value(value)
        sn = bytes.fromhex(args.sn) if args.sn else os.urandom(8)
        now = int(time.time())
        iat, exp = (now - 400 * 86400, now - 86400) if args.expired else (None, None)
        card = issuer.issue_card(args.mid, sn, ap=args.ap, attr=attr or None, iat=iat, exp=exp)
        if args.clone:
            card = clone_of(card, f"clone of {args.mid}")
    card.faults = CardFaults(tear_after=args.torn_after)
    card.hold_s = args.hold
    text = card.to_json()
    if args.output is None:
        sys.stdout.write(text + "\n")
    else:
        tmp = args.output.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(args.output)  # a feed reader never sees half a card
        print(f"card written to {args.output}")
    return 0
