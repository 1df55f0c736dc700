"""`sukumo-city bundle keygen|sign|publish|log`: the city's signed bundles (docs/city.md,
"Signing bundles"), with the key in a file or in a PKCS#11 token."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from city import bundles
from city.settings import CitySettings, SigningSettings
from city.signing import Signer, TokenKey, file_signer, kid_of, token_keygen, token_signer
from reader.errors import ConfigError
from reader.system.i18n import _

if TYPE_CHECKING:
    from city.db import Store


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bundle", help=_("sign and publish trust, denylist and config "
                                             "bundles; the registry of versions"))
    verbs = parser.add_subparsers(dest="verb", required=True)

    def key_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key-file", type=Path, metavar="PEM", help=_(
            "sign with this private key file (development; the offline root machine)"))
        p.add_argument("--token", metavar="LABEL", help=_(
            "sign with a key in this PKCS#11 token (default: [signing] token)"))
        p.add_argument("--label", metavar="LABEL", help=_(
            "the key's label in the token (default: [signing] key_label)"))
        p.add_argument("--module", type=Path, metavar="SO", help=_(
            "the token's PKCS#11 module (default: [signing] module)"))

    keygen = verbs.add_parser("keygen", help=_(
        "make an ops key inside the token; prints its public point and kid for the trust "
        "bundle"))
    key_args(keygen)
    sign = verbs.add_parser("sign", help=_("sign a JSON payload into a bundle file"))
    sign.add_argument("kind", choices=bundles.KINDS)
    sign.add_argument("payload", type=Path, help=_("the payload as JSON (keys in hex)"))
    sign.add_argument("--out", type=Path, required=True, metavar="FILE")
    sign.add_argument("--muni", required=True, metavar="CODE")
    sign.add_argument("--tid", default="", help=_("the terminal, for a config bundle"))
    sign.add_argument("--version", type=int, help=_(
        "the version (default: the registry's next one)"))
    sign.add_argument("--kid", help=_("the key id to name (hex; default: from the key)"))
    sign.add_argument("--offline", action="store_true", help=_(
        "no database (the offline root machine): --version is required, and `publish` "
        "checks and records the version"))
    key_args(sign)
    publish = verbs.add_parser("publish", help=_(
        "publish a signed bundle, retained, after checking its version"))
    publish.add_argument("file", type=Path, help=_("the signed bundle (binary, or hex text)"))
    publish.add_argument("--unregistered", action="store_true", help=_(
        "development only: publish without the registry (no database, no version check)"))
    verbs.add_parser("log", help=_("every bundle signed and published"))


def run(args: argparse.Namespace, settings: CitySettings, store: Store | None) -> int:
    """`store` is None for what needs no database (`needs_database`)."""
    if args.verb == "keygen":
        where = _token_key(args, settings.signing)
        point = token_keygen(where)
        print(json.dumps({"kid": kid_of(point).hex(), "pk": point.hex(), "key": where.uri()}))
        return 0
    if args.verb == "sign":
        signer = _signer(args, settings.signing)
        data = bundles.sign(bundles.read_payload(args.payload), kind=args.kind,
                            muni=args.muni, tid=args.tid, signer=signer,
                            kid=_kid(args.kid or settings.signing.kid),
                            registry=store, version=args.version, by=getpass.getuser())
        args.out.write_bytes(data)
        facts = bundles.facts_of(data)
        print(_("signed {kind} version {version} for {muni} ({size} bytes, sha256 {sha}) "
                "-> {out}").format(kind=facts.kind, version=facts.version, muni=facts.muni,
                                   size=facts.size, sha=facts.sha256[:16], out=args.out))
        return 0
    if args.verb == "publish":
        return _publish(args.file, settings, store)
    assert store is not None
    for row in store.bundle_log():
        print(f"{row['at']:%Y-%m-%d %H:%M:%S}  {row['action']:<9} {row['muni']} "
              f"{row['kind']:<8} {row['tid'] or '-':<12} v{row['version']:<6} "
              f"{row['sha256'][:16]}  {row['by_whom']}  {row['key']}")
    return 0


def needs_database(args: argparse.Namespace) -> bool:
    return not (args.verb == "keygen" or (args.verb == "sign" and args.offline)
                or (args.verb == "publish" and args.unregistered))


def _publish(path: Path, settings: CitySettings, store: Store | None) -> int:
    """Publish retained; with a registry (`store`), only a version above the last one
    published, recorded once the broker took it."""
    from city.link import publish_retained

    data = bundles.read_signed(path)
    facts = bundles.facts_of(data)
    if store is not None:
        bundles.check_version(store, facts, published=True)  # before anything leaves
    topic = bundles.topic_of(facts, settings.mqtt.topic_prefix)
    if not publish_retained(settings.mqtt, topic, data):
        print(_("not published: the broker did not confirm within 10 s (see the log)"),
              file=sys.stderr)
        return 3
    if store is not None:
        store.record_bundle(facts, action="published", by=getpass.getuser(), key="-")
    print(_("published {kind} version {version} retained on {topic}").format(
        kind=facts.kind, version=facts.version, topic=topic))
    return 0


def _token_key(args: argparse.Namespace, s: SigningSettings) -> TokenKey:
    module, token, label = args.module or s.module, args.token or s.token, args.label or s.key_label
    if not (module and token and label):
        raise ConfigError(_("which token key? give --module, --token and --label (or "
                            "[signing] module, token, key_label)"))
    return TokenKey(Path(module), token, label)


def _signer(args: argparse.Namespace, s: SigningSettings) -> Signer:
    key_file = args.key_file or s.key_file
    if key_file and not (args.token or args.label):
        return file_signer(Path(key_file))
    return token_signer(_token_key(args, s))


def _kid(text: str) -> bytes | None:
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError(_("--kid {kid!r} is not hex").format(kid=text)) from None
