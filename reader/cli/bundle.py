"""`sukumo-reader bundle import FILE [--kind trust|denylist|config]`: offline provisioning.

The same signed bundles the city publishes over MQTT (mqtt-v1 §5), loaded from a file
(raw COSE_Sign1 or hex text) with exactly the same checks: signature by a key trusted for
the kind, kind, muni, tid for config, version above the one held. Applied bundles are
saved in the bundle directory; a running daemon uses them from its next start (or gets
the same bundle from its broker).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reader.bundles.files import import_bundle_file
from reader.bundles.store import KINDS
from reader.cli import EXIT_FAILED, EXIT_OK
from reader.config import load_settings
from reader.errors import BundleError
from reader.system.i18n import _
from reader.terminal.lock import holder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help=_("import signed trust / denylist / config bundles"),
                       description=_(
                           "The same signed bundles the city publishes over MQTT (mqtt-v1 "
                           "§5), loaded from a file (raw COSE_Sign1 or hex text) with exactly "
                           "the same checks. Applied bundles are saved in the bundle "
                           "directory; a running daemon uses them from its next start."))
    actions = p.add_subparsers(dest="bundle_action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", help=_("verify and apply a bundle from a file"))
    imp.add_argument("file", type=Path, metavar="FILE",
                     help=_("the bundle: raw COSE_Sign1 bytes or hex text, as the city sends it"))
    imp.add_argument("--kind", choices=list(KINDS), default=None,
                     help=_("the kind to apply it as (default: what the payload says)"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        kind, version = import_bundle_file(settings, args.file, args.kind)
    except BundleError as exc:
        print(_("refused ({reason}): {why}").format(reason=exc.reason, why=exc))
        if exc.reason == "untrusted_signer":
            print(_("Next: import the trust bundle first (`sukumo-reader bundle import "
                    "TRUST_FILE`): denylist and config bundles are signed by the ops keys it "
                    "carries. Then import this one again."))
        return EXIT_FAILED
    print(_("applied {kind} bundle version {version} (saved in {where})").format(
        kind=kind, version=version, where=settings.paths.bundle_dir))
    pid = holder(settings.paths.state_dir)
    if pid is not None:  # it holds its bundles in memory: a revocation waits for a restart
        print(_("the running daemon (pid {pid}) uses it from its next start: `sudo systemctl "
                "restart sukumo-reader`").format(pid=pid or "?"))
    return EXIT_OK
