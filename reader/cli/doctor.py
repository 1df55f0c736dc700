"""`sukumo-reader doctor`: one line per check, ✓ or ✗, and what to do about each ✗."""

from __future__ import annotations

import argparse
import json

from reader.cli import EXIT_FAILED, EXIT_OK
from reader.system.i18n import _, display_width, ngettext
from reader.technician.doctor import Check, run_checks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help=_("check that this terminal is ready, and say what to fix"),
        description=_("Checks the config, the TLS key and certificate, pcscd and the reader, "
                    "the sound card, the clock, the broker (a real TLS + MQTT connection), "
                    "the trust and denylist bundles, disk space and the queue. Exit 0 when "
                    "everything is fine, 1 when any check failed."))
    p.add_argument("--user", default="sukumo",
                   help=_("service user that must own the key (default sukumo)"))
    p.add_argument("--json", action="store_true",
                   help=_('print {"ok": bool, "checks": [{name, title, ok, detail, advice}]}: '
                          "`name` is a stable English id, the rest in the reader's language"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = run_checks(args.config, args.user)
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]},
                         indent=2, ensure_ascii=False))
    else:
        print(render(checks))
    return EXIT_OK if ok else EXIT_FAILED


def render(checks: list[Check]) -> str:
    width = max(display_width(c.title) for c in checks)
    lines = []
    for c in checks:
        title = c.title + " " * (width - display_width(c.title))
        lines.append(f"{'✓' if c.ok else '✗'} {title}  {c.detail}")
        if not c.ok and c.advice:
            lines.append(f"  {'':<{width}}  → {c.advice}")
    failed = sum(not c.ok for c in checks)
    lines.append(_("all checks passed") if not failed else
                 ngettext("{n} check failed", "{n} checks failed", failed).format(n=failed))
    return "\n".join(lines)
