"""`sukumo-reader provision`: make this Pi terminal TID; then `--import-cert` the signed cert."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

from reader.cli import EXIT_OK, EXIT_USAGE
from reader.config import DEFAULT_CONFIG_PATH, Settings
from reader.errors import ConfigError
from reader.system.i18n import N_, _
from reader.technician.provision import (
    CONFIG_FILE,
    ProvisionRequest,
    import_certificate,
    installed_certificate,
    provision,
)

CERT_WARN_DAYS = 30  # as doctor warns
# (flag, attribute, section, key, question) in the order a technician is asked.
FIELDS = [
    ("--terminal-id", "terminal_id", "terminal", "id", N_("Terminal id (e.g. t-0001)")),
    ("--muni", "muni", "terminal", "muni", N_("Municipality code (6 digits)")),
    ("--facility", "facility", "terminal", "facility", N_("Facility id")),
    ("--mode", "mode", "terminal", "mode", N_("Mode (checkin/event/nursery/coupon/watch)")),
    ("--broker", "broker_url", "mqtt", "url", N_("Broker URL (mqtts://host:8883, empty: offline)")),
    ("--root-key", "root_public_key", "verify", "root_public_key",
     N_("Root public key (hex, or the key file on the USB stick)")),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "provision", help=_("set this terminal up: identity, broker, root key, TLS key + CSR"),
        description=_("Step 1 (no --import-cert): write reader.toml, create the config and "
                    "state directories, generate the terminal key (kept, if one exists) and "
                    "a CSR for the city CA. Asks for missing values when run in a terminal; "
                    "give every flag to script it. Step 2: --import-cert CERT --ca CA "
                    "installs the certificate the city CA signed, after checking it."))
    for flag, dest, _section, _key, question in FIELDS:
        p.add_argument(flag, dest=dest, default=None, help=_(question))
    p.add_argument("--config-dir", type=Path, default=None,
                   help=_("configuration directory (default: that of --config, else "
                          "{path})").format(path=DEFAULT_CONFIG_PATH.parent))
    p.add_argument("--state-dir", type=Path, default=None,
                   help=_("queue and bundles directory (default /var/lib/sukumo-reader)"))
    p.add_argument("--user", default="sukumo",
                   help=_("service user owning the key and state (default sukumo)"))
    p.add_argument("--no-chown", action="store_true",
                   help=_("leave file owners alone (a laptop or a test, not a terminal)"))
    p.add_argument("--csr-out", type=Path, default=None,
                   help=_("also copy the CSR here (e.g. onto the USB stick for the city CA)"))
    p.add_argument("--import-cert", type=Path, default=None, metavar="CERT",
                   help=_("step 2: install this signed certificate (PEM or DER)"))
    p.add_argument("--ca", type=Path, default=None,
                   help=_("the city CA certificate (with --import-cert)"))
    p.add_argument("--transport", choices=["auto", "pcsc", "nfcpy", "virtual"], default=None,
                   help=_("[reader] transport: the card reader (auto: detect what is plugged "
                        "in; asked in a terminal; virtual reads no card: development only)"))
    p.add_argument("--json", action="store_true", help=_("machine-readable result"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config_dir = args.config_dir or (args.config or DEFAULT_CONFIG_PATH).parent
    user = None if args.no_chown else args.user
    if args.import_cert is not None:
        if args.ca is None:
            print(_("provision --import-cert needs --ca CA_CERT (the city CA)"),
                  file=sys.stderr)
            return EXIT_USAGE
        cert = import_certificate(config_dir, args.import_cert, args.ca, user)
        days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
        if days < CERT_WARN_DAYS:
            print(_("Warning: this certificate expires in {days} day(s): ask the city CA for "
                    "a renewal now (send it terminal.csr again).").format(days=days),
                  file=sys.stderr)
        installed = {"certificate": cert.subject.rfc4514_string(),
                     "not_after": cert.not_valid_after_utc.isoformat(),
                     "installed_in": str(config_dir / "tls")}
        _show(args, installed, _("Installed {certificate}, valid until {until}. Next: "
                                 "`sukumo-reader doctor`.").format(
            certificate=installed["certificate"], until=installed["not_after"][:10]))
        return EXIT_OK

    existing = _existing(config_dir / CONFIG_FILE)
    values = _values(args, existing)
    missing = [flag for flag, dest, *_ in FIELDS if values.get(dest) is None]
    if missing:
        print(_("provision: missing {flags} (or run it in a terminal to be asked)").format(
            flags=", ".join(missing)), file=sys.stderr)
        return EXIT_USAGE
    state_dir = args.state_dir or Path(existing.get("paths", {}).get("state_dir")
                                       or Settings().paths.state_dir)
    transport, seen = _transport(args, existing)
    result = provision(ProvisionRequest(**values, config_dir=config_dir, state_dir=state_dir,
                                        service_user=user, transport=transport))
    if args.csr_out is not None:
        shutil.copyfile(result.csr_file, args.csr_out)
    out: dict[str, str | bool | None] = {
           "config_file": str(result.config_file), "key_file": str(result.key_file),
           "csr_file": str(result.csr_file), "key_created": result.key_created,
           "csr_copied_to": str(args.csr_out) if args.csr_out else None,
           "transport": transport, "reader_seen": seen}
    key = (_("Generated a new terminal key ({path}, mode 0600).") if result.key_created
           else _("Kept the existing terminal key ({path}, mode 0600).")).format(
               path=result.key_file)
    _show(args, out, "\n".join([
        _("Wrote {path}.").format(path=result.config_file),
        _("Card reader: transport = {transport}").format(transport=transport)
        + (f" ({seen})" if seen else "") + ".",
        key,
        *_next_step(config_dir, args.csr_out or result.csr_file),
        _("The service starts at the next boot; to start it now: "
          "sudo systemctl start sukumo-reader")]))
    return EXIT_OK


def _values(args: argparse.Namespace, existing: dict[str, Any]) -> dict[str, Any]:
    """Flags first; then, in a terminal, ask (offering what the config already holds)."""
    values: dict[str, Any] = {}
    ask = sys.stdin.isatty()
    for _flag, dest, section, key, question in FIELDS:
        given = getattr(args, dest)
        current = existing.get(section, {}).get(key)
        while given is None and ask:
            # Each answer is checked as it is given and asked again when it is wrong:
            # a mistake in the last question must not lose the earlier answers.
            answer = _prompt(_(question), current)
            if answer is None:  # end of input: stop asking, report what is missing
                break
            problem = answer_problem(dest, answer)
            if problem is None:
                given = answer
            else:
                print(_("  not accepted: {why}").format(why=problem), file=sys.stderr)
        values[dest] = given
    return values


def answer_problem(dest: str, answer: str) -> str | None:
    """Why this answer to a provision question cannot be used (None: it can)."""
    from pydantic import ValidationError

    from reader.config import TerminalSettings
    from reader.technician.provision import check_broker_url, parse_root_public_key

    try:
        if dest in ("terminal_id", "muni", "facility", "mode"):
            field = {"terminal_id": "id"}.get(dest, dest)
            TerminalSettings.model_validate({field: answer})
        elif dest == "broker_url":
            check_broker_url(answer)
        elif dest == "root_public_key":
            parse_root_public_key(answer)
    except ValidationError as exc:
        return "; ".join(err["msg"] for err in exc.errors())
    except ConfigError as exc:
        return str(exc)
    return None


def _transport(args: argparse.Namespace, existing: dict[str, Any]) -> tuple[str, str]:
    """[reader] transport: the flag; else, in a terminal, asked (detected as the offer);
    else what the config holds, or detected. Never `virtual` unless asked for by name."""
    from reader.technician.provision import detect_transport

    chosen = args.transport
    if chosen not in (None, "auto"):
        return chosen, ""
    current = existing.get("reader", {}).get("transport")
    if chosen is None and current in ("pcsc", "nfcpy"):
        return current, ""
    detected, seen = detect_transport()
    if chosen is None and sys.stdin.isatty():
        answer = _prompt(_("Card reader (pcsc = RC-S300, nfcpy = RC-S380; {seen})").format(
            seen=seen), detected)
        if answer not in ("pcsc", "nfcpy", "virtual"):
            raise ConfigError(_("[reader] transport {answer!r}: use pcsc, nfcpy or virtual"
                                ).format(answer=answer))
        return answer, seen
    return detected, seen


def _next_step(config_dir: Path, csr: Path) -> list[str]:
    cert = installed_certificate(config_dir)
    if cert is not None and cert.not_valid_after_utc > dt.datetime.now(dt.UTC):
        return [_("A certificate for this key is installed (valid until {until}): nothing "
                  "to send to the city CA. Next: `sukumo-reader doctor`.").format(
                      until=cert.not_valid_after_utc.date().isoformat())]
    return [_("Next: send {csr} to the city CA, then run").format(csr=csr),
            "  sukumo-reader provision --import-cert terminal.crt --ca ca.crt"]


def _prompt(question: str, current: Any) -> str | None:
    suffix = f" [{current}]" if current not in (None, "") else ""
    try:
        answer = input(f"{question}{suffix}: ").strip()
    except EOFError:
        return None
    return answer or (str(current) if current is not None else "")


def _existing(config_file: Path) -> dict[str, Any]:
    try:
        with config_file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(_("cannot read {path}: {why}").format(path=config_file, why=exc)
                          ) from None


def _show(args: argparse.Namespace, out: dict[str, Any], text: str) -> None:
    print(json.dumps(out, indent=2) if args.json else text)
