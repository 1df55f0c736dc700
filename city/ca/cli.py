"""`sukumo-city ca …`: the city's CA from the command line. Thin: the logic is in
authority.py; this parses, prints and maps CaError to exit 2 (an operator mistake).
It needs files only, never the database: a development city's CA works without one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from city.ca.authority import DEFAULT_DAYS, REASONS, CaError, CertificateAuthority, init_ca
from city.ca.authority import init_root as make_root
from reader.system.i18n import _

if TYPE_CHECKING:
    from city.settings import CitySettings

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_DIR = Path("/var/lib/sukumo-city/ca")


def ca_dir(args: argparse.Namespace, settings: CitySettings | None) -> Path:
    """--ca-dir, else [ca] dir (SUKUMO_CITY_CA__DIR), else the default."""
    return args.ca_dir or (settings.ca.dir if settings else None) or DEFAULT_DIR


def register(sub: argparse._SubParsersAction) -> None:
    ca = sub.add_parser("ca", help=_("the city's certificate authority for terminals"),
                        description=_("Issue, list and revoke terminal certificates "
                                      "(mqtt-v1 §6) and publish the CRL the broker checks."))
    ca.add_argument("--ca-dir", type=Path, default=None, help=_(
        "the CA's directory (default: [ca] dir of the settings, or {path})").format(
            path=DEFAULT_DIR))
    cmds = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    p = cmds.add_parser("init-root", help=_("make the offline root CA (once, on the offline "
                                            "machine)"))
    p.add_argument("--root-dir", type=Path, required=True)
    p = cmds.add_parser("init", help=_("make the issuing CA (signed by the root with "
                                       "--root-dir; self-signed without: a development city)"))
    p.add_argument("--muni", required=True, help=_("the municipality code (6 digits)"))
    p.add_argument("--root-dir", type=Path, default=None)
    p.add_argument("--crl-url", default=None, help=_(
        "where crl.pem will be served over HTTP, written into certificates and the CRL "
        "(for brokers that fetch it, e.g. EMQX); not needed for mosquitto's crlfile"))
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help=_(
        "validity of terminal certificates in days (default {days})").format(
            days=DEFAULT_DAYS))
    p = cmds.add_parser("sign", help=_("sign a terminal's CSR (CN = terminal id, "
                                       "O = municipality code)"))
    p.add_argument("csr", type=Path)
    p.add_argument("--days", type=int, default=None,
                   help=_("validity in days (default: the CA's)"))
    p.add_argument("--out", type=Path, default=None,
                   help=_("certificate file (default: the CSR's name with .crt)"))
    p = cmds.add_parser("server-cert", help=_("the broker's TLS key and certificate"))
    p.add_argument("--host", action="append", required=True,
                   help=_("a name or IP address of the broker (repeat for several)"))
    p.add_argument("--out", type=Path, required=True,
                   help=_("directory for server.key and server.crt"))
    p = cmds.add_parser("list", help=_("every certificate issued, with revocations"))
    p.add_argument("--json", action="store_true")
    p = cmds.add_parser("revoke", help=_("revoke a certificate, or every one of a terminal"))
    p.add_argument("target", metavar="SERIAL|TID")
    p.add_argument("--reason", required=True, choices=list(REASONS))
    p = cmds.add_parser("crl", help=_("sign and write the CRL (the broker's crlfile)"))
    p.add_argument("--days", type=int, default=30,
                   help=_("next update in days (default 30): publish again before it"))
    p.add_argument("--out", type=Path, default=None, help=_("also write it here"))


def run(args: argparse.Namespace, settings: CitySettings | None = None) -> int:
    try:
        return _run(args, ca_dir(args, settings))
    except CaError as exc:
        print(f"sukumo-city ca {args.ca_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace, ca_dir: Path) -> int:
    cmd = args.ca_command
    if cmd == "init-root":
        root_file = make_root(args.root_dir)
        print(_("root CA: {cert} (its key {key}: keep it offline)").format(
            cert=root_file, key=args.root_dir / "root.key"))
        return EXIT_OK
    if cmd == "init":
        ca = init_ca(ca_dir, args.muni, args.root_dir, cert_days=args.days,
                     crl_url=args.crl_url)
        print(_("issuing CA for {muni}: {subject}, valid until {date}").format(
            muni=ca.muni, subject=ca.cert.subject.rfc4514_string(),
            date=f"{ca.cert.not_valid_after_utc:%Y-%m-%d}"))
        print(_("terminals and the broker trust: {path}").format(path=ca.trust_file))
        return EXIT_OK
    ca = CertificateAuthority.load(ca_dir)
    if cmd == "sign":
        return _sign(ca, args)
    if cmd == "server-cert":
        key_file, cert_file = ca.server_certificate(args.out, args.host)
        print(_("broker: certfile {cert}, keyfile {key}, cafile {ca}").format(
            cert=cert_file, key=key_file, ca=ca.trust_file))
        return EXIT_OK
    if cmd == "list":
        issued = ca.log.issued()
        if args.json:
            print(json.dumps([{"serial": c.serial, "tid": c.tid, "muni": c.muni,
                               "not_after": c.not_after.isoformat(), "issued_at": c.at,
                               "revoked_at": c.revoked_at, "reason": c.reason}
                              for c in issued], indent=1))
            return EXIT_OK
        for c in issued:
            state = (_("revoked {at} ({reason})").format(at=c.revoked_at, reason=c.reason)
                     if c.revoked else _("valid"))
            print(f"{c.serial:<40} {c.tid:<20} {c.muni} {c.not_after:%Y-%m-%d}  {state}")
        return EXIT_OK
    if cmd == "revoke":
        done = ca.revoke(args.target, args.reason)
        for c in done:
            print(_("revoked {serial} ({tid}): {reason}").format(
                serial=c.serial, tid=c.tid, reason=args.reason))
        if not done:
            print(_("{target}: already revoked").format(target=args.target))
        print(_("now publish the CRL (`sukumo-city ca crl`) and restart the broker"))
        return EXIT_OK
    if cmd == "crl":
        path = ca.publish_crl(args.days, args.out)
        print(_("CRL written to {path} (next update in {days} days)").format(
            path=path, days=args.days))
        return EXIT_OK
    raise AssertionError(cmd)


def _sign(ca: CertificateAuthority, args: argparse.Namespace) -> int:
    try:
        csr = x509.load_pem_x509_csr(args.csr.read_bytes())
    except OSError as exc:
        raise CaError(_("{path}: cannot read it ({why})").format(
            path=args.csr, why=exc.strerror)) from None
    except ValueError:
        raise CaError(_("{path}: not a PEM certificate request (the terminal's "
                        "tls/terminal.csr)").format(path=args.csr)) from None
    cert = ca.sign(csr, days=args.days)
    out = args.out or args.csr.with_suffix(".crt")
    out.write_text(ca.chain_pem(cert))
    print(_("{path}: {subject}, serial {serial}, valid until {date}").format(
        path=out, subject=cert.subject.rfc4514_string(), serial=f"{cert.serial_number:x}",
        date=f"{cert.not_valid_after_utc:%Y-%m-%d}"))
    print(_("install it on the terminal: sukumo-reader provision --import-cert {path} "
            "--ca {ca}").format(path=out, ca=ca.trust_file))
    return EXIT_OK
