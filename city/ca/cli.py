"""`sukumo-city ca …`: the city's CA from the command line. Thin: the logic is in
authority.py; this parses, prints and maps CaError to exit 2 (an operator mistake)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cryptography import x509

from city.ca.authority import DEFAULT_DAYS, REASONS, CaError, CertificateAuthority, init_ca
from city.ca.authority import init_root as make_root

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_DIR = Path("/var/lib/sukumo-city/ca")


def default_dir() -> Path:
    return Path(os.environ.get("SUKUMO_CITY_CA_DIR") or DEFAULT_DIR)


def register(sub: argparse._SubParsersAction) -> None:
    ca = sub.add_parser("ca", help="the city's certificate authority for terminals",
                        description="Issue, list and revoke terminal certificates "
                        "(mqtt-v1 §6) and publish the CRL the broker checks.")
    ca.add_argument("--ca-dir", type=Path, default=None,
                    help="the CA's directory (default $SUKUMO_CITY_CA_DIR or "
                    f"{DEFAULT_DIR})")
    cmds = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    p = cmds.add_parser("init-root", help="make the offline root CA (once, on the "
                        "offline machine)")
    p.add_argument("--root-dir", type=Path, required=True)
    p = cmds.add_parser("init", help="make the issuing CA (signed by the root with "
                        "--root-dir; self-signed without: a development city)")
    p.add_argument("--muni", required=True, help="the municipality code (6 digits)")
    p.add_argument("--root-dir", type=Path, default=None)
    p.add_argument("--days", type=int, default=DEFAULT_DAYS,
                   help=f"validity of terminal certificates (default {DEFAULT_DAYS})")
    p = cmds.add_parser("sign", help="sign a terminal's CSR (CN = terminal id, "
                        "O = municipality)")
    p.add_argument("csr", type=Path)
    p.add_argument("--days", type=int, default=None, help="validity (default: the CA's)")
    p.add_argument("--out", type=Path, default=None,
                   help="certificate file (default: the CSR's name with .crt)")
    p = cmds.add_parser("server-cert", help="the broker's TLS key and certificate")
    p.add_argument("--host", action="append", required=True,
                   help="a name or IP address of the broker (repeat for several)")
    p.add_argument("--out", type=Path, required=True, help="directory for server.key/.crt")
    p = cmds.add_parser("list", help="every certificate issued, with revocations")
    p.add_argument("--json", action="store_true")
    p = cmds.add_parser("revoke", help="revoke a certificate, or every one of a terminal")
    p.add_argument("target", metavar="SERIAL|TID")
    p.add_argument("--reason", required=True, choices=list(REASONS))
    p = cmds.add_parser("crl", help="sign and write the CRL (the broker's crlfile)")
    p.add_argument("--days", type=int, default=30,
                   help="next update in days (default 30): publish again before it")
    p.add_argument("--out", type=Path, default=None, help="also write it here")
    ca.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except CaError as exc:
        print(f"sukumo-city ca {args.ca_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    ca_dir: Path = args.ca_dir or default_dir()
    cmd = args.ca_command
    if cmd == "init-root":
        root_file = make_root(args.root_dir)
        print(f"root CA: {root_file} (key {args.root_dir / 'root.key'}: keep it offline)")
        return EXIT_OK
    if cmd == "init":
        ca = init_ca(ca_dir, args.muni, args.root_dir, cert_days=args.days)
        print(f"issuing CA for {ca.muni}: {ca.cert.subject.rfc4514_string()}, valid until "
              f"{ca.cert.not_valid_after_utc:%Y-%m-%d}")
        print(f"terminals and the broker trust: {ca.trust_file}")
        return EXIT_OK
    ca = CertificateAuthority.load(ca_dir)
    if cmd == "sign":
        try:
            csr = x509.load_pem_x509_csr(args.csr.read_bytes())
        except OSError as exc:
            raise CaError(f"{args.csr}: cannot read it ({exc.strerror})") from None
        except ValueError:
            raise CaError(f"{args.csr}: not a PEM certificate request (the terminal's "
                          "tls/terminal.csr)") from None
        cert = ca.sign(csr, days=args.days)
        out = args.out or args.csr.with_suffix(".crt")
        out.write_text(ca.chain_pem(cert))
        print(f"{out}: {cert.subject.rfc4514_string()}, serial {cert.serial_number:x}, "
              f"valid until {cert.not_valid_after_utc:%Y-%m-%d}")
        print(f"install with: sukumo-reader provision --import-cert {out} --ca {ca.trust_file}")
        return EXIT_OK
    if cmd == "server-cert":
        key_file, cert_file = ca.server_certificate(args.out, args.host)
        print(f"broker: certfile {cert_file}, keyfile {key_file}, cafile {ca.trust_file}")
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
            state = f"revoked {c.revoked_at} ({c.reason})" if c.revoked else "valid"
            print(f"{c.serial:<40} {c.tid:<20} {c.muni} until {c.not_after:%Y-%m-%d}  "
                  f"{state}")
        return EXIT_OK
    if cmd == "revoke":
        done = ca.revoke(args.target, args.reason)
        for c in done:
            print(f"revoked {c.serial} ({c.tid}): {args.reason}")
        if not done:
            print(f"{args.target}: already revoked")
        print("now publish the CRL: sukumo-city ca crl, and reload the broker")
        return EXIT_OK
    if cmd == "crl":
        path = ca.publish_crl(args.days, args.out)
        print(f"CRL written to {path} (next update in {args.days} days)")
        return EXIT_OK
    raise AssertionError(cmd)


def main(argv: list[str] | None = None) -> int:
    """`python -m city.ca.cli`: the same commands without the rest of sukumo-city."""
    parser = argparse.ArgumentParser(prog="sukumo-city")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
