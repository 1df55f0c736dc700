"""`sukumo-reader tap`: wait for one card, show every APDU with its timing, and the verdict.

For a technician at the reader: it runs the same transport, card session and checks 1-8
as the daemon, but records nothing, plays nothing and sends nothing. Output shows APDU
headers, lengths and status words, never record contents (only mid and serial).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from reader.bundles.store import TrustStore
from reader.cli import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from reader.config import Settings, load_settings
from reader.config.profiles import profile_for
from reader.errors import ConfigError
from reader.system import codes, i18n
from reader.system.i18n import _
from reader.terminal.lock import holder
from reader.terminal.tap import TapOutcome, perform_tap
from reader.transports import TapSource, create_transport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tap", help=_("wait for one card and show each APDU, its timing and the verdict"),
        description=_("Opens the configured reader, waits for one card, runs the card "
                    "sequence and checks 1-8 of card-ap-v1 and prints each step. Records "
                    "nothing. Exit 0 when the card was accepted, 1 when rejected, 2 when the "
                    "daemon runs (without --force), 3 when no card came, the reader is "
                    "missing or the terminal holds no root key."))
    p.add_argument("--timeout", type=float, default=30.0,
                   help=_("seconds to wait for a card (default 30)"))
    p.add_argument("--json", action="store_true", help=_("print the outcome as one JSON object"))
    p.add_argument("--force", action="store_true",
                   help=_("tap even while the terminal daemon runs (it records the card too)"))
    p.set_defaults(func=run)




def load_trust(settings: Settings) -> tuple[TrustStore | None, list[str]]:
    """The terminal's TrustStore from its persisted bundles, and warnings worth printing."""
    try:
        trust = TrustStore.from_settings(settings)
    except ConfigError:
        return None, [_("no root key is pinned ([verify] root_public_key): run "
                        "`sukumo-reader provision` first; no card can be verified without it")]
    warnings = []
    if not trust.versions["trust"]:
        warnings.append(_("no trust bundle in {path}: every card will be refused ({reason}) "
                          "until the terminal has synced once").format(
            path=settings.paths.bundle_dir, reason=codes.said("reason", "unknown_issuer")))
    if not trust.versions["denylist"]:
        warnings.append(_("no denylist bundle: revoked cards cannot be recognised"))
    return trust, warnings


def wait_and_tap(settings: Settings, trust: TrustStore, timeout: float,
                 say: Any = print,
                 on_state: Callable[[str], None] | None = None,
                 claim: bool = False) -> TapOutcome | None:
    def changed(state: str) -> None:
        if on_state is not None:
            on_state(state)
        say(_("reader: {state}").format(state=codes.said("reader", state)))

    source = TapSource(create_transport(settings.reader), on_state=changed, claim=claim)
    try:
        deadline = time.monotonic() + timeout
        say(_("waiting up to {seconds:.0f} s for a card on the {transport} reader…").format(
            seconds=timeout, transport=settings.reader.transport))
        while time.monotonic() < deadline:
            link = source.next_tap(min(0.25, max(deadline - time.monotonic(), 0.01)))
            if link is not None:
                return perform_tap(link, profile_for(settings), trust, settings.terminal.id,
                                   clock_skew_s=settings.verify.clock_skew_s,
                                   deadline_s=settings.reader.tap_deadline_s)
        return None
    finally:
        source.close()


def steps(outcome: TapOutcome) -> list[dict[str, Any]]:
    rows = []
    for i, exchange in enumerate(outcome.transcript):
        response = exchange.response
        rows.append({
            "step": exchange.step,
            "header": exchange.command[:5].hex(" ").upper(),
            "sent_bytes": len(exchange.command),
            "data_bytes": max(len(response) - 2, 0),
            "sw": response[-2:].hex().upper() if len(response) >= 2 else "",
            "ms": round(outcome.timings_ms[i], 2) if i < len(outcome.timings_ms) else None,
        })
    return rows


def verdict(outcome: TapOutcome) -> dict[str, Any]:
    record = outcome.record
    return {
        "accepted": outcome.reason is None,
        "reason": outcome.reason,
        "detail": outcome.detail,
        "mid": record.mid if record else None,
        "sn": record.sn.hex() if record else None,
        "total_ms": round(sum(outcome.timings_ms), 2),
    }


def render(outcome: TapOutcome) -> str:
    lines = [_("{step:<22} {command:<16} {sent:>5} {data:>5}  SW    {ms:>7}").format(
        step=_("step"), command=_("command"), sent=_("sent"), data=_("data"), ms="ms")]
    for row in steps(outcome):
        ms = f"{row['ms']:7.2f}" if row["ms"] is not None else "      —"
        lines.append(f"{row['step']:<22} {row['header']:<16} {row['sent_bytes']:>5} "
                     f"{row['data_bytes']:>5}  {row['sw'] or '—':<4}  {ms}")
    v = verdict(outcome)
    lines.append(_("APDU time {ms:.2f} ms over {n} APDU(s)").format(
        ms=v["total_ms"], n=len(outcome.timings_ms)))
    if v["accepted"]:
        lines.append(_("ACCEPTED  mid={mid}  sn={sn}  (checks 1-8; the mode decides 9)").format(
            mid=v["mid"], sn=v["sn"]))
    else:
        who = f"  mid={v['mid']} sn={v['sn']}" if v["mid"] else ""
        # The card core's detail is a developer's English diagnostic: it is in --json in
        # every language, and beside the reason only where the messages are English.
        detail = v["detail"] if i18n.language() == "en" else ""
        lines.append(_("REJECTED  {reason}{who}  {detail}").format(
            reason=codes.said("reason", v["reason"]), who=who, detail=detail).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    pid = holder(settings.paths.state_dir)
    if pid is not None:
        # The daemon reads the same reader: the card would be recorded, chimed and sent
        # to the city while the technician thinks `tap` records nothing.
        running = (_("the terminal daemon is running (pid {pid})").format(pid=pid) if pid
                   else _("the terminal daemon is running"))
        if not args.force:
            print(_("sukumo-reader tap: {running} and reads this reader: a card tapped now "
                    "would be recorded by it too. Stop it first (sudo systemctl stop "
                    "sukumo-reader), or add --force").format(running=running),
                  file=sys.stderr)
            return EXIT_USAGE
        print(_("warning: {running}: it records this card too").format(running=running),
              file=sys.stderr)
    trust, warnings = load_trust(settings)
    if trust is None:  # nothing could be verified: say so as the reason, not as a warning
        print(_("sukumo-reader tap: {why}").format(why=warnings[0]), file=sys.stderr)
        return EXIT_ENVIRONMENT
    for warning in warnings:
        print(_("warning: {what}").format(what=warning))
    states: list[str] = []

    def say(message: str) -> None:
        if not args.json:
            print(message)

    # Unless forced, a daemon of another configuration reading this reader refuses it too.
    outcome = wait_and_tap(settings, trust, args.timeout, say=say, on_state=states.append,
                           claim=not args.force)
    if outcome is None:
        missing = not states or states[-1] != "ok"  # the reader never answered
        why = (_("no {transport} reader was found: check its USB cable, then "
                 "`sukumo-reader readers` lists what this terminal can see").format(
                     transport=settings.reader.transport)
               if missing else _("no card was tapped within {seconds:.0f} s").format(
                   seconds=args.timeout))
        print(json.dumps({"card": False, "reader_found": not missing}) if args.json else why)
        return EXIT_ENVIRONMENT
    if args.json:
        print(json.dumps({"card": True, "steps": steps(outcome), **verdict(outcome)},
                         ensure_ascii=False))
    else:
        print(render(outcome))
    return EXIT_OK if outcome.reason is None else EXIT_FAILED
