"""Provisioning: turn a freshly installed Pi into terminal `tid` of municipality `muni`.

Two steps, because the city CA signs offline:
1. `provision(request)` writes reader.toml (terminal identity, broker, pinned root key),
   creates the config and state directories with their owners and modes, generates the
   terminal's P-256 key once (mode 0600, owned by the service user; never printed or
   logged) and writes a CSR (CN = terminal id, O = municipality code) for the city CA.
2. `import_certificate(...)` installs the signed certificate and the CA certificate after
   checking that the certificate is for our key, is signed by that CA and is valid now.

Running step 1 again keeps the existing key (the certificate stays valid) and updates
only the settings it was given, leaving the technician's other edits and comments alone.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reader.errors import ConfigError
from reader.queue.pseudonym import KEY_FILE as PSEUDONYM_FILE
from reader.queue.pseudonym import Pseudonyms
from reader.sync import endpoint
from reader.sync.endpoint import certificate_problem, make_csr
from reader.system import plain
from reader.system.atomic import write_atomic
from reader.system.i18n import _

CONFIG_FILE = "reader.toml"
TLS_DIR = "tls"
KEY_FILE = "terminal.key"
CSR_FILE = "terminal.csr"
CERT_FILE = "terminal.crt"
CA_FILE = "ca.crt"
# Written last by provision(): the unit's ConditionPathExists= (systemd/sukumo-reader.service)
# keeps the service from starting, and so from failing in a loop, before it exists.
PROVISIONED_FILE = "provisioned"


@dataclass(frozen=True)
class ProvisionRequest:
    terminal_id: str
    muni: str
    facility: str
    mode: str
    broker_url: str
    root_public_key: str  # hex point, or a path to a PEM/DER public key file
    config_dir: Path = Path("/etc/sukumo-reader")
    state_dir: Path = Path("/var/lib/sukumo-reader")
    service_user: str | None = "sukumo"  # None: leave owners as they are (tests, laptops)
    transport: str = "pcsc"  # [reader] transport: pcsc, nfcpy, virtual (on purpose)
    virtual_feed: str | None = None  # [reader] virtual_feed; None: left as it is


@dataclass(frozen=True)
class ProvisionResult:
    config_file: Path
    key_file: Path
    csr_file: Path
    key_created: bool


def tls_paths(config_dir: Path) -> dict[str, Path]:
    tls = config_dir / TLS_DIR
    return {"key": tls / KEY_FILE, "csr": tls / CSR_FILE, "cert": tls / CERT_FILE,
            "ca": tls / CA_FILE}


def provision(req: ProvisionRequest) -> ProvisionResult:
    """Step 1. Raises ConfigError when a value is invalid (nothing is half-written then)."""
    from reader.config import load_settings

    root_key = parse_root_public_key(req.root_public_key)
    check_broker_url(req.broker_url)
    paths = tls_paths(req.config_dir)
    uid, gid = _owner(req.service_user)
    # Config readable by the service (group), writable only by root; state its own.
    _make_dir(req.config_dir, 0o750, -1, gid)
    _make_dir(paths["key"].parent, 0o750, -1, gid)
    _make_dir(req.state_dir, 0o750, uid, gid)

    config_file = req.config_dir / CONFIG_FILE
    text = config_file.read_text() if config_file.exists() else _header()
    for section, name, value in [
        ("terminal", "id", req.terminal_id),
        ("terminal", "muni", req.muni),
        ("terminal", "facility", req.facility),
        ("terminal", "mode", req.mode),
        ("verify", "root_public_key", root_key),
        ("paths", "state_dir", str(req.state_dir)),
        ("mqtt", "url", req.broker_url),
        ("mqtt", "key_file", str(paths["key"])),
        ("reader", "transport", req.transport),
        *([("reader", "virtual_feed", req.virtual_feed)] if req.virtual_feed else []),
    ]:
        text = set_toml_value(text, section, name, value)
    candidate = config_file.with_name(CONFIG_FILE + ".new")
    _write(candidate, text.encode(), 0o640, -1, gid)
    try:
        load_settings(candidate)  # refuse to install a file the daemon would refuse
    except ConfigError:
        candidate.unlink()
        raise
    candidate.replace(config_file)

    key, created = _load_or_create_key(paths["key"], uid, gid)
    # The secret of the member pseudonyms: made here, once, kept across re-provisioning.
    Pseudonyms.load_or_create(req.state_dir / PSEUDONYM_FILE)
    csr = make_csr(key, req.terminal_id, req.muni)
    _write(paths["csr"], csr.public_bytes(serialization.Encoding.PEM), 0o644, -1, -1)
    _write(req.config_dir / PROVISIONED_FILE,
           f"{req.terminal_id} {req.muni}\n".encode(), 0o644, -1, -1)
    return ProvisionResult(config_file, paths["key"], paths["csr"], created)


def detect_transport() -> tuple[str, str]:
    """The reader backend that sees a reader plugged in, and what it saw; PC/SC (the
    RC-S300) when none does, so the terminal still asks for a real reader."""
    from reader.config.settings import ReaderSettings
    from reader.errors import SukumoError
    from reader.transports import transport_class

    for name in ("pcsc", "nfcpy"):
        try:
            info = transport_class(name)(ReaderSettings(transport=name)).describe()
        except SukumoError:
            continue
        if info.available and info.readers:
            return name, info.readers[0].name
    return "pcsc", _("no reader found; plug the RC-S300 in and run `sukumo-reader doctor`")


def import_certificate(config_dir: Path, cert_file: Path, ca_file: Path,
                       service_user: str | None = "sukumo") -> x509.Certificate:
    """Step 2: check the signed certificate against our key and the CA, then install both."""
    from reader.config import load_settings

    paths = tls_paths(config_dir)
    if not paths["key"].exists():
        raise ConfigError(_("no terminal key at {path}: run `sukumo-reader provision` first"
                            ).format(path=paths["key"]))
    key = load_private_key(paths["key"])
    cert = load_certificate(cert_file)
    ca = load_certificate(ca_file)
    # The city's ca.crt is its issuing CA then the root above it (`sukumo-city ca`): all
    # of it is installed, or TLS could not build the chain to a self-signed root.
    bundle = _ca_bundle(ca_file, ca)
    ca = next((c for c in bundle if _issued_by(cert, c)), ca)
    terminal_id = load_settings(config_dir / CONFIG_FILE).terminal.id
    problem = certificate_problem(cert, key, ca, terminal_id)
    if problem:
        raise ConfigError(_("{path}: {problem}").format(path=cert_file, problem=problem))
    _uid, gid = _owner(service_user)
    pem = serialization.Encoding.PEM
    _write(paths["cert"], cert.public_bytes(pem), 0o644, -1, gid)
    _write(paths["ca"], b"".join(c.public_bytes(pem) for c in bundle), 0o644, -1, gid)
    config_file = config_dir / CONFIG_FILE
    text = config_file.read_text()
    text = set_toml_value(text, "mqtt", "cert_file", str(paths["cert"]))
    text = set_toml_value(text, "mqtt", "ca_file", str(paths["ca"]))
    _write(config_file, text.encode(), 0o640, -1, gid)
    load_settings(config_file)
    return cert


def _ca_bundle(path: Path, first: x509.Certificate) -> list[x509.Certificate]:
    """Every certificate of a PEM CA file (a DER file holds one: `first`)."""
    data = Path(path).read_bytes()
    return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [first]


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, ValueError, TypeError: another CA
        return False
    return True


def check_broker_url(url: str) -> None:
    """The broker as the daemon will need it, refused now rather than found by doctor."""
    if not url:
        return  # offline: taps are queued until a broker is set
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("mqtts", "mqtt") or not parts.hostname or not port_ok:
        raise ConfigError(_("--broker {url!r} is not a broker address: give the city's "
                            "broker as mqtts://HOST:8883, or leave it empty to run offline"
                            ).format(url=url))
    if parts.scheme == "mqtt" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise ConfigError(_("--broker {url!r}: mqtt:// has no TLS and is for a broker on this "
                            "machine only; the city's broker is mqtts://HOST:8883"
                            ).format(url=url))


def installed_certificate(config_dir: Path) -> x509.Certificate | None:
    """The certificate installed for this terminal's present key, if it is one."""
    paths = tls_paths(config_dir)
    try:
        cert = load_certificate(paths["cert"])
        key = load_private_key(paths["key"])
    except ConfigError:
        return None
    return cert if cert.public_key() == key.public_key() else None


def parse_root_public_key(value: str) -> str:
    """The root key as config wants it (uncompressed P-256 point, hex) from hex or a key file."""
    value = value.strip()
    if re.fullmatch(r"04[0-9A-Fa-f]{128}", value):
        point = bytes.fromhex(value)
    else:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(_("root public key: {value!r} is neither a P-256 point in hex "
                                "(04…, 130 digits) nor a readable key file").format(
                                    value=value))
        data = path.read_bytes()
        try:
            key = (serialization.load_pem_public_key(data) if b"-----BEGIN" in data
                   else serialization.load_der_public_key(data))
        except ValueError as exc:  # cryptography's "Could not deserialize key data…"
            plain.keep(exc, path=path)
            raise ConfigError(_("root public key file {path} holds no public key (PEM or "
                                "DER): give the city's root key file (root.pub.pem, written "
                                "by `issue-card init`) or the key in hex (04…, 130 digits)"
                                ).format(path=path)) from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ConfigError(_("root public key file {path}: not a P-256 key").format(
                path=path))
        point = key.public_bytes(serialization.Encoding.X962,
                                 serialization.PublicFormat.UncompressedPoint)
    try:  # is it on the curve at all?
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ConfigError(_("root public key: not a valid P-256 point")) from None
    return point.hex()


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return endpoint.load_private_key(
        path, _("the terminal key {path}").format(path=path),
        _("run `sukumo-reader provision` to make a new key and CSR"))


def load_certificate(path: Path) -> x509.Certificate:
    return endpoint.load_certificate(Path(path), _("the certificate {path}").format(path=path))


_SECTION = re.compile(r"^\s*#?\s*\[([A-Za-z0-9_.]+)\]\s*$")


def set_toml_value(text: str, section: str, key: str, value: str) -> str:
    """Set `key = "value"` in `[section]`, keeping every other line and comment.

    Replaces the key's line (or its commented-out example `#key = …`) in place; adds the
    key under the section header, or the section at the end, when neither exists.
    """
    lines = text.splitlines()
    entry = f"{key} = {_toml_string(value)}"
    key_line = re.compile(rf"^\s*#?\s*{re.escape(key)}\s*=")
    start = next((i for i, line in enumerate(lines)
                  if (m := _SECTION.match(line)) and m.group(1) == section
                  and not line.lstrip().startswith("#")), None)
    if start is None:
        lines += ["", f"[{section}]", entry]
        return "\n".join(lines) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if key_line.match(lines[i]):
            lines[i] = entry
            break
    else:
        lines.insert(start + 1, entry)
    return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _header() -> str:
    return ("# sukumo-reader settings, written by `sukumo-reader provision`.\n"
            "# Every key is explained in /opt/sukumo-reader/firmware_config/reader.toml.\n")


def _owner(user: str | None) -> tuple[int, int]:
    if user is None:
        return -1, -1
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(_("service user {user!r} does not exist: run scripts/install.sh "
                            "first (it creates it) or pass --user").format(user=user)) from None
    return entry.pw_uid, entry.pw_gid


def _make_dir(path: Path, mode: int, uid: int, gid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)


def _write(path: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Atomic write with mode and owner set before the file appears under its name."""
    write_atomic(path, data, mode, uid, gid)


def _load_or_create_key(path: Path, uid: int, gid: int) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    if path.exists():
        return load_private_key(path), False
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # 0600 from the first byte (mkstemp), owned by the service user that must read it.
    _write(path, pem, 0o600, uid, gid)
    return key, True
