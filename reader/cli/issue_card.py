"""`sukumo-reader issue-card`: development cards for the virtual reader.

`issue-card init DIR` makes a throw-away development issuer (root, issuer and ops
keys) with its signed trust and denylist bundles and the root's public key, as hex for
reader.toml and as `root.pub.pem` for `provision --root-key`; `issue-card new DIR ...` writes a
virtual card as a `*.card` file, which a terminal with `[reader] virtual_feed` takes
as a tap. Never for production: the root printed here must not be pinned in the field.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from reader.emulator.card import CardFaults
from reader.emulator.issuer import DevIssuer, clone_of, foreign_card
from reader.system.i18n import _

ROOT_PEM = "root.pub.pem"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "issue-card", help=_("development cards and bundles for the virtual reader"),
        description=_("`issue-card init DIR` makes a throw-away development issuer (root, "
                      "issuer and ops keys) with its signed trust and denylist bundles; "
                      "`issue-card new DIR ...` writes a virtual card as a *.card file, which a "
                      "terminal with [reader] virtual_feed takes as a tap. Never for "
                      "production: the root printed here must not be pinned in the field."))
    cmds = p.add_subparsers(dest="issue_command", required=True, metavar="SUBCOMMAND")
    init = cmds.add_parser("init", help=_("make a development issuer and its bundles in DIR"))
    init.add_argument("dir", type=Path,
                      help=_("where to keep the development issuer's keys (created)"))
    new = cmds.add_parser("new", help=_("write one virtual card (a *.card file)"))
    new.add_argument("dir", type=Path, help=_("the directory given to `init`"))
    new.add_argument("--mid", default="SK-DEV-0001", help=_("member id (default SK-DEV-0001)"))
    new.add_argument("--sn", default=None, help=_("card serial, 16 hex digits (default random)"))
    new.add_argument("--ap", choices=("member", "nursery"), default="member",
                     help=_("the card application: member (default) or nursery"))
    new.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                     help=_("record attribute, e.g. senior=true, birth_year=1948 (repeatable)"))
    kind = new.add_mutually_exclusive_group()
    kind.add_argument("--expired", action="store_true", help=_("a card that expired yesterday"))
    kind.add_argument("--clone", action="store_true",
                      help=_("the record on a chip without its key"))
    kind.add_argument("--unregistered", action="store_true",
                      help=_("a My Number Card without the city application"))
    new.add_argument("--torn-after", type=int, default=None, metavar="N",
                     help=_("the card leaves the field after N APDUs"))
    new.add_argument("--hold", type=float, default=0.0, metavar="S",
                     help=_("keep the card on the virtual reader for S seconds"))
    new.add_argument("-o", "--output", type=Path, default=None,
                     help=_("where to write the card (default: print it)"))
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
    print(_("development issuer written to {where} (DEVELOPMENT KEYS: never in the field)")
          .format(where=directory))
    # The root's public key as a file too: what `provision` takes for "the key file on
    # the USB stick" (docs/technician.md), beside the hex for reader.toml.
    pem = directory / ROOT_PEM
    pem.write_bytes(issuer.root.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    print(_("pin in reader.toml:  [verify] root_public_key = \"{root}\"").format(
        root=issuer.root_public_hex))
    print(_("or give provision the key file:  --root-key {pem}").format(pem=pem))
    print(_("then:  sukumo-reader bundle import {trust}\n"
            "       sukumo-reader bundle import {denylist}").format(
        trust=directory / "trust.cbor", denylist=directory / "denylist.cbor"))
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
            key, _sep, value = item.partition("=")
            attr[key] = _attr_value(value)
        sn = bytes.fromhex(args.sn) if args.sn else os.urandom(8)
        now = int(time.time())
        iat, exp = (now - 400 * 86400, now - 86400) if args.expired else (None, None)
        card = issuer.issue_card(args.mid, sn, ap=args.ap, attr=attr or None, iat=iat, exp=exp)
        if args.clone:
            card = clone_of(card, _("clone of {mid}").format(mid=args.mid))
    card.faults = CardFaults(tear_after=args.torn_after)
    card.hold_s = args.hold
    text = card.to_json()
    if args.output is None:
        sys.stdout.write(text + "\n")
    else:
        tmp = args.output.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(args.output)  # a feed reader never sees half a card
        print(_("card written to {path}").format(path=args.output))
    return 0
