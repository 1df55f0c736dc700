"""Where the city broker is and how to reach it safely (mqtt-v1 §6)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from reader.config import MqttSettings
from reader.errors import ConfigError
from reader.system import plain
from reader.system.i18n import _

if TYPE_CHECKING:  # x509 costs the daemon's start-up; imported where a file is checked
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool


def parse_endpoint(m: MqttSettings) -> Endpoint:
    """mqtts://host[:8883] with CA + client certificate; mqtt:// only for loopback or
    `allow_insecure` (development). ConfigError names the setting at fault."""
    url = urlsplit(m.url)
    if url.scheme not in ("mqtts", "mqtt") or not url.hostname:
        raise ConfigError(_("setting mqtt.url = {url!r}: use mqtts://host:port").format(
            url=m.url))
    tls = url.scheme == "mqtts"
    try:
        port = url.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(_("setting mqtt.url = {url!r}: bad port").format(url=m.url)) from None
    if tls:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(m, name)
            if path is None or not path.is_file():
                raise ConfigError(_(
                    "setting mqtt.{name} = {path}: a readable file is required for mqtts:// "
                    "(mqtt-v1 §6: a client certificate per terminal)").format(name=name,
                                                                              path=path))
    elif not (_is_loopback(url.hostname) or m.allow_insecure):
        raise ConfigError(_("setting mqtt.url = {url!r}: mqtt:// without TLS is allowed only "
                            "for loopback or with mqtt.allow_insecure = true").format(url=m.url))
    return Endpoint(url.hostname, port, tls)


def tls_context(ca_file: Path | None, cert_file: Path | None,
                key_file: Path | None) -> ssl.SSLContext:
    """§6: TLS 1.2+, the server checked against the city CA (name included), our client
    certificate offered. ValueError when a file is not set."""
    if ca_file is None or cert_file is None or key_file is None:
        raise ValueError(_("mqtt.ca_file, mqtt.cert_file and mqtt.key_file must all be set "
                           "for mqtts://"))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls_files(m: MqttSettings, terminal_id: str,
                    pair: tuple[Path, Path] | None = None) -> None:
    """Before `run` starts, not in the sync loop forever: the key is a private key only
    the service can read (0600, owned by the user we run as; or 0640 root-owned with our
    group), the certificate is for that key, names this terminal (CN) and is signed by
    the CA. ConfigError naming the setting at fault. `pair` (certificate, key) is a pair
    renewed over the air (mqtt-v1 §7), in force instead of the configured one."""
    if pair is not None:
        m = m.model_copy(update={"cert_file": pair[0], "key_file": pair[1]})
    assert m.key_file is not None and m.cert_file is not None and m.ca_file is not None
    info = m.key_file.stat()
    mode = stat.S_IMODE(info.st_mode)
    private = ((mode & 0o077 == 0 and info.st_uid == os.geteuid())
               or (mode == 0o640 and info.st_uid == 0 and info.st_gid in _our_groups()))
    if not private:
        raise ConfigError(_(
            "setting mqtt.key_file = {path}: mode {mode}, owner uid {uid}; the private key "
            "must be 0600 and owned by the service user: chown {euid}: {path} && chmod 0600 "
            "{path}").format(path=m.key_file, mode=f"{mode:04o}", uid=info.st_uid,
                             euid=os.geteuid()))
    key = load_private_key(m.key_file, _setting("mqtt.key_file", m.key_file),
                           _("is it the certificate or the CA instead?"))
    cert = load_certificate(m.cert_file, _setting("mqtt.cert_file", m.cert_file))
    ca = load_certificate(m.ca_file, _setting("mqtt.ca_file", m.ca_file))
    problem = certificate_problem(cert, key, ca, terminal_id)
    if problem:
        raise ConfigError(_("setting mqtt.cert_file = {cert}: {problem} (key mqtt.key_file = "
                            "{key}, CA mqtt.ca_file = {ca})").format(
                                cert=m.cert_file, problem=problem, key=m.key_file, ca=m.ca_file))


def certificate_problem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                        ca: x509.Certificate | None, terminal_id: str | None = None,
                        now: dt.datetime | None = None) -> str:
    """Why this certificate cannot serve as our client certificate, or "" when it can."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.oid import NameOID

    now = now or dt.datetime.now(dt.UTC)
    if cert.public_key() != key.public_key():
        return _("the certificate is not for this terminal's key (was it made from this CSR?)")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if terminal_id and [n.value for n in names] != [terminal_id]:
        found = str(names[0].value) if names else "none"
        return _("the certificate is for CN={found}, this terminal is {tid}").format(
            found=found, tid=terminal_id)
    if ca is not None:
        try:
            cert.verify_directly_issued_by(ca)
        except InvalidSignature:
            return _("the certificate is not signed by the given CA (signature does not "
                     "verify)")
        except (ValueError, TypeError) as exc:  # OpenSSL's "Issuer certificate subject…"
            plain.keep(exc)
            return _("the certificate was issued by {issuer}, not by the given CA ({ca}): "
                     "give the CA certificate the city sent with it").format(
                issuer=cert.issuer.rfc4514_string(), ca=ca.subject.rfc4514_string())
    if now < cert.not_valid_before_utc:
        return _("the certificate is not valid before {date} (is the clock right?)").format(
            date=f"{cert.not_valid_before_utc:%Y-%m-%d}")
    if now >= cert.not_valid_after_utc:
        return _("the certificate expired on {date}").format(
            date=f"{cert.not_valid_after_utc:%Y-%m-%d}")
    return ""


def make_csr(key: ec.EllipticCurvePrivateKey, terminal_id: str,
             muni: str) -> x509.CertificateSigningRequest:
    """The terminal's CSR: provisioning's first, and every renewal's (mqtt-v1 §7: the
    same subject as the current certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    # mqtt-v1 §6: the broker knows the terminal by the CN of its client certificate.
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, terminal_id),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, muni),
    ])
    return (x509.CertificateSigningRequestBuilder().subject_name(name)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))


def load_private_key(path: Path, named: str, advice: str) -> ec.EllipticCurvePrivateKey:
    """The terminal's EC private key from a PEM file. `named` is how the messages name the
    file (the setting, or "the terminal key …"); `advice` what to do about a file that is
    not a key: each caller knows its own next step."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(_("{named}: cannot read it: {problem}").format(
            named=named, problem=plain.os_words(exc))) from None
    except (ValueError, TypeError) as exc:
        plain.keep(exc, path=path)
        raise ConfigError(_("{named}: not an unencrypted PEM private key; {advice}"
                            ).format(named=named, advice=advice)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(_("{named}: not an EC (P-256) private key").format(named=named))
    return key


def load_certificate(path: Path, named: str) -> x509.Certificate:
    """An X.509 certificate from a PEM or DER file, named in messages as `named`."""
    from cryptography import x509

    try:
        data = path.read_bytes()
        return (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except OSError as exc:
        raise ConfigError(_("{named}: cannot read it: {problem}").format(
            named=named, problem=plain.os_words(exc))) from None
    except ValueError:
        # cryptography's parser detail ("ParseError { kind: ShortData }") tells a
        # technician nothing: say what the file should be and where it comes from.
        raise ConfigError(_("{named} is not an X.509 certificate (PEM or DER): use the "
                            "certificate file the city CA signed from this terminal's CSR"
                            ).format(named=named)) from None


def _setting(key: str, path: Path) -> str:
    return _("setting {key} = {path}").format(key=key, path=path)


def _our_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}
