"""The city's certificate authority: an offline root, an issuing CA under it, terminal
certificates (mqtt-v1 §6: CN = tid, O = muni, clientAuth), revocation and the CRL.

Files in the CA directory (`ca init`), all written atomically:
  issuing.key  the issuing CA's P-256 key (0600; never printed)
  issuing.crt  its certificate (signed by the root, or self-signed for a development city)
  ca.crt       what terminals and the broker trust: issuing.crt, then root.crt
  ca.json      the municipality this CA issues for and the default validity
  log.jsonl    every issuance and revocation, append-only (log.py)
  crl.pem      the last CRL published (`ca crl`), for the broker's `crlfile`
The root (`ca init-root DIR`) lives in its own directory, on a machine or medium kept
offline; it is needed only to make (or replace) the issuing CA.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from city.ca.log import CaLog, Issued, now_rfc3339
from reader.system.atomic import write_atomic
from reader.system.i18n import _

ROOT_KEY, ROOT_CERT = "root.key", "root.crt"
KEY, CERT, TRUST, META, CRL = "issuing.key", "issuing.crt", "ca.crt", "ca.json", "crl.pem"
TID = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")  # mqtt-v1: the terminal id
MUNI = re.compile(r"[0-9]{6}")  # the 6-digit local government code
DEFAULT_DAYS = 365
CLOCK_SKEW = dt.timedelta(minutes=5)  # not_before a little early: terminals' clocks drift
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}


class CaError(Exception):
    """An operator mistake or a request the CA refuses; the message says which and why."""


class CsrRefused(CaError):
    """A CSR the CA will not sign. `code` is the mqtt-v1 §7 error code it maps to."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of either."""
    write_atomic(path, data, mode)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_file(path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise CaError(_("{path}: cannot load the CA key ({why})").format(
            path=path, why=exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(_("{path}: not an EC private key").format(path=path))
    return key


def _ca_cert(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
             signer: ec.EllipticCurvePrivateKey, days: int,
             path_length: int | None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(signer, hashes.SHA256()))


def init_root(root_dir: Path, name: str = "Sukumo City root CA", days: int = 7300) -> Path:
    """The offline root: a key and a self-signed certificate in `root_dir`."""
    root_dir.mkdir(parents=True, exist_ok=True)
    if (root_dir / ROOT_KEY).exists():
        raise CaError(_("{path} exists: a root is made once; keep using it").format(
            path=root_dir / ROOT_KEY))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca_cert(_name(name), _name(name), key.public_key(), key, days, path_length=1)
    _write_key(root_dir / ROOT_KEY, key)
    write_file(root_dir / ROOT_CERT, _pem(cert))
    return root_dir / ROOT_CERT


def init_ca(ca_dir: Path, muni: str, root_dir: Path | None = None, days: int = 1825,
            cert_days: int = DEFAULT_DAYS, name: str | None = None,
            crl_url: str | None = None) -> CertificateAuthority:
    """The issuing CA, signed by the root in `root_dir` (or self-signed without one: a
    development city). Refuses to replace an existing one (its log would be orphaned).
    `crl_url`: where the city serves crl.pem over HTTP, written into every certificate
    and the CRL, for brokers that fetch it themselves (EMQX)."""
    if not MUNI.fullmatch(muni):
        raise CaError(_("--muni {muni!r}: the municipality code has 6 digits (e.g. 392081)"
                              ).format(muni=muni))
    if cert_days < 1:
        raise CaError(_("--days {days}: at least 1").format(days=cert_days))
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    if (ca_dir / KEY).exists():
        raise CaError(_("{path} exists: this CA is already set up (`sukumo-city ca list`)"
                              ).format(path=ca_dir / KEY))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name or f"Sukumo City issuing CA {muni}", muni)
    if root_dir is None:
        cert = _ca_cert(subject, subject, key.public_key(), key, days, path_length=0)
        chain = [cert]
    else:
        root_key = _load_key(root_dir / ROOT_KEY)
        try:
            root = x509.load_pem_x509_certificate((root_dir / ROOT_CERT).read_bytes())
        except (OSError, ValueError) as exc:
            raise CaError(_("{path}: not the root certificate ({why})").format(
                path=root_dir / ROOT_CERT, why=exc)) from None
        # The issuing CA never outlives the root that vouches for it.
        days = min(days, (root.not_valid_after_utc - dt.datetime.now(dt.UTC)).days)
        cert = _ca_cert(subject, root.subject, key.public_key(), root_key, days, path_length=0)
        chain = [cert, root]
    _write_key(ca_dir / KEY, key)
    write_file(ca_dir / CERT, _pem(cert))
    write_file(ca_dir / TRUST, b"".join(_pem(c) for c in chain))
    write_file(ca_dir / META, json.dumps({"muni": muni, "days": cert_days,
                                          "crl_url": crl_url}).encode(), 0o640)
    ca = CertificateAuthority.load(ca_dir)
    ca.log.append({"op": "init", "at": now_rfc3339(), "by": getpass.getuser(),
                   "subject": cert.subject.rfc4514_string(),
                   "serial": f"{cert.serial_number:x}",
                   "root": chain[-1].subject.rfc4514_string() if root_dir else None})
    return ca


@dataclass
class CertificateAuthority:
    ca_dir: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    trust: list[x509.Certificate]  # ca.crt: this CA, then the root (if any)
    muni: str
    days: int
    log: CaLog
    crl_url: str | None = None

    @classmethod
    def load(cls, ca_dir: Path) -> CertificateAuthority:
        if not (ca_dir / KEY).exists():
            raise CaError(_("no CA in {path}: run `sukumo-city ca init --muni CODE` first"
                              ).format(path=ca_dir))
        try:
            meta = json.loads((ca_dir / META).read_text())
            trust = x509.load_pem_x509_certificates((ca_dir / TRUST).read_bytes())
        except (OSError, ValueError) as exc:
            raise CaError(_("{path}: the CA's files are damaged ({why})").format(
                path=ca_dir, why=exc)) from None
        return cls(ca_dir, _load_key(ca_dir / KEY), trust[0], trust, str(meta["muni"]),
                   int(meta["days"]), CaLog(ca_dir), meta.get("crl_url"))

    @property
    def trust_file(self) -> Path:
        return self.ca_dir / TRUST

    @property
    def crl_file(self) -> Path:
        return self.ca_dir / CRL

    def chain_pem(self, cert: x509.Certificate) -> str:
        """§7 `chain`: the certificate, then the intermediates (this CA, if under a root)."""
        return b"".join(_pem(c) for c in [cert, *self.trust[:-1]]).decode()

    # -- terminal certificates ----------------------------------------------------------

    def check_csr(self, csr: x509.CertificateSigningRequest) -> tuple[str, str]:
        """(tid, muni) of a CSR this CA may sign; CsrRefused saying why not."""
        if not csr.is_signature_valid:
            raise CsrRefused("policy", _("the CSR's signature does not verify"))
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        if len(cns) != 1 or len(orgs) != 1 or len(csr.subject) != 2:
            raise CsrRefused("subject", _(
                "subject {subject!r}: must be exactly CN=<terminal id>, O=<municipality code>"
            ).format(subject=csr.subject.rfc4514_string()))
        tid, muni = str(cns[0].value), str(orgs[0].value)
        if not TID.fullmatch(tid):
            raise CsrRefused("subject", _(
                "CN={tid!r} is not a terminal id ([a-z0-9][a-z0-9-]{{2,63}})").format(tid=tid))
        if muni != self.muni:
            raise CsrRefused("subject", _("O={muni!r}: this CA issues for {ours} only").format(
                muni=muni, ours=self.muni))
        key = csr.public_key()
        if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
            raise CsrRefused("policy", _("the CSR's key is not P-256"))
        return tid, muni

    def sign(self, csr: x509.CertificateSigningRequest, days: int | None = None,
             req: str | None = None, by: str | None = None,
             not_before: dt.datetime | None = None,
             lock_timeout: float = 10.0) -> x509.Certificate:
        """A terminal certificate from a CSR `check_csr` accepts, recorded in the log.
        `not_before` is for tests that need a certificate already part-used."""
        tid, muni = self.check_csr(csr)
        days = self.days if days is None else days
        if days < 1:
            raise CaError(_("--days {days}: at least 1").format(days=days))
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        start = not_before or dt.datetime.now(dt.UTC) - CLOCK_SKEW
        end = min(start + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        builder = (x509.CertificateBuilder().subject_name(_name(tid, muni))
                .issuer_name(self.cert.subject).public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False))
        if self.crl_url:
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(self.crl_url)], None, None, None)]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        with self.log.locked(lock_timeout):
            self.log.append({
                "op": "issue", "at": now_rfc3339(), "by": by or getpass.getuser(),
                "serial": f"{cert.serial_number:x}", "tid": tid, "muni": muni,
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(), "req": req,
                "sha256": cert.fingerprint(hashes.SHA256()).hex(),
                "cert": _pem(cert).decode()})
        return cert

    def server_certificate(self, out_dir: Path, hosts: list[str],
                           days: int = 825) -> tuple[Path, Path]:
        """The broker's TLS server key and certificate (names and IPs in the SAN)."""
        if not hosts:
            raise CaError(_("--host: give at least one name or IP address of the broker"))
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(hosts[0]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW)
                .not_valid_after(min(now + dt.timedelta(days=days),
                                     self.cert.not_valid_after_utc))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        out_dir.mkdir(parents=True, exist_ok=True)
        key_file, cert_file = out_dir / "server.key", out_dir / "server.crt"
        _write_key(key_file, key)
        # The chain up to (not including) the root: clients hold the root.
        write_file(cert_file, _pem(cert) + b"".join(_pem(c) for c in self.trust[:-1]))
        with self.log.locked():
            self.log.append({"op": "server", "at": now_rfc3339(), "by": getpass.getuser(),
                             "serial": f"{cert.serial_number:x}", "hosts": hosts,
                             "not_after": cert.not_valid_after_utc.isoformat()})
        return key_file, cert_file

    # -- revocation ---------------------------------------------------------------------

    def find(self, serial_or_tid: str) -> list[Issued]:
        """The certificates `serial_or_tid` names: one serial (hex, colons and 0x allowed),
        else every certificate of that terminal id."""
        issued = self.log.issued()
        serial = serial_or_tid.lower().removeprefix("0x").replace(":", "")
        by_serial = [c for c in issued if c.serial == serial.lstrip("0")]
        by_tid = [c for c in issued if c.tid == serial_or_tid]
        if by_serial and by_tid:
            raise CaError(_("{target!r} is both a serial and a terminal id; give the serial "
                            "with colons (aa:bb:…) or 0x in front").format(target=serial_or_tid))
        return by_serial or by_tid

    def revoke(self, serial_or_tid: str, reason: str, by: str | None = None) -> list[Issued]:
        """Revoke one certificate, or every unexpired one of a terminal. Returns what was
        newly revoked (already revoked ones are left as they are)."""
        if reason not in REASONS:
            raise CaError(_("--reason {reason!r}: one of {choices}").format(
                reason=reason, choices=", ".join(REASONS)))
        found = self.find(serial_or_tid)
        if not found:
            raise CaError(_("{target!r}: no certificate with that serial or terminal id in "
                            "this CA's log (`sukumo-city ca list`)").format(target=serial_or_tid))
        now = dt.datetime.now(dt.UTC)
        todo = [c for c in found if not c.revoked and (len(found) == 1 or not c.expired(now))]
        with self.log.locked():
            for c in todo:
                self.log.append({"op": "revoke", "at": now_rfc3339(),
                                 "by": by or getpass.getuser(), "serial": c.serial,
                                 "tid": c.tid, "reason": reason})
        return todo

    def publish_crl(self, days: int = 30, out: Path | None = None) -> Path:
        """Sign the CRL of every revocation in the log and write it (PEM) to crl.pem and
        `out`. A broker refuses every client once its CRL's next update has passed:
        publish again well before `days` are over."""
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - CLOCK_SKEW).next_update(now + dt.timedelta(days=days))
                   .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        if self.crl_url:  # EMQX enforces a CRL only with this extension (RFC 5280 5.2.5)
            builder = builder.add_extension(x509.IssuingDistributionPoint(
                [x509.UniformResourceIdentifier(self.crl_url)], None, True, False, None,
                False, False), critical=True)
        for c in self.log.issued():
            if c.revoked_at is None:
                continue
            revoked_at = dt.datetime.fromisoformat(c.revoked_at.replace("Z", "+00:00"))
            entry = (x509.RevokedCertificateBuilder().serial_number(int(c.serial, 16))
                     .revocation_date(revoked_at))
            if c.reason and c.reason != "unspecified":
                entry = entry.add_extension(x509.CRLReason(REASONS[c.reason]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        pem = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        write_file(self.crl_file, pem)
        if out is not None:
            write_file(out, pem)
        with self.log.locked():
            self.log.append({"op": "crl", "at": now_rfc3339(), "by": getpass.getuser(),
                             "next_update": (now + dt.timedelta(days=days)).isoformat()})
        return out or self.crl_file
