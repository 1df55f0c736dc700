"""A real, throw-away mosquitto on loopback for tests, the demo and benchmarks.

`DevBroker(workdir).start()` makes a test CA, a server certificate for 127.0.0.1, one client
certificate per terminal (CN = terminal id, which mosquitto turns into the MQTT username
through `use_identity_as_username` and into the client id through
`use_username_as_clientid`, so a certificate can only ever be its own terminal), a second
CA for the city's own clients with the receiver's certificate, writes mosquitto.conf and
the mqtt-v1 §6 ACL, and starts /usr/sbin/mosquitto on two free loopback ports: `url` for
terminals, `city_url` for the city's receivers (several receivers share one certificate
and need client ids of their own, which the terminal listener would overwrite). It is the
exact set-up docs/city-integration.md describes, so what the tests prove is what a city runs.

Nothing here is for production: keys are unencrypted files and the CA lives for one run.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reader.errors import SyncError

MOSQUITTO = "/usr/sbin/mosquitto"
RECEIVER_CN = "city-receiver"


@dataclass(frozen=True)
class Identity:
    """A client certificate and its key, as files."""

    cn: str
    cert_file: Path
    key_file: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def acl_text(prefix: str, muni: str, receiver_cn: str = RECEIVER_CN,
             towns: dict[str, tuple[str, ...]] | None = None) -> str:
    """mqtt-v1 §6 as a mosquitto acl_file: a terminal (username = CN = tid) may publish only
    its own events and status and read only its own acks and config and its municipality's
    trust and denylist; the city receiver reads events and status and writes acks and bundles.

    One town: `pattern` lines, so a terminal added later needs no broker reload. Several
    towns on one broker (`towns`: muni -> its terminals): a pattern cannot tie a username
    to ITS town (mosquitto substitutes only %u and %c), so each terminal gets its own
    `user` block naming its town; adding a terminal is a line in this file and a SIGHUP.

    With an acl_file mosquitto never refuses a SUBSCRIBE; it filters what it delivers and
    refuses (PUBACK 0x87 under MQTT 5) a PUBLISH that no line allows.
    """
    p, m = prefix, muni
    if towns:
        terminals = [
            "# mqtt-v1 §6, one block per terminal: its town is in its topics.",
            *(line for town, tids in sorted(towns.items()) for tid in tids for line in (
                f"user {tid}",
                f"topic write {p}/{town}/{tid}/events",
                f"topic write {p}/{town}/{tid}/status",
                f"topic read {p}/{town}/{tid}/acks",
                f"topic read {p}/{town}/{tid}/config",
                f"topic read {p}/{town}/trust",
                f"topic read {p}/{town}/denylist",
                ""))]
    else:
        terminals = [
            "# mqtt-v1 §6. %u is the username = the client certificate CN = the terminal id.",
            f"pattern write {p}/{m}/%u/events",
            f"pattern write {p}/{m}/%u/status",
            f"pattern read {p}/{m}/%u/acks",
            f"pattern read {p}/{m}/%u/config",
            # Municipality-wide: a pattern is the only ACL line that applies to every user
            # (`topic` lines above any `user` line apply to anonymous clients only).
            # mosquitto logs "does not contain %c or %u" for these two lines: expected.
            f"pattern read {p}/{m}/trust",
            f"pattern read {p}/{m}/denylist",
            ""]
    return "\n".join([
        *terminals,
        f"user {receiver_cn}",
        f"topic read {p}/+/+/events",
        f"topic read {p}/+/+/status",
        f"topic write {p}/+/+/acks",
        f"topic write {p}/+/+/config",
        f"topic write {p}/+/trust",
        f"topic write {p}/+/denylist",
        "",
    ])


@dataclass
class DevBroker:
    """One mosquitto process and its PKI under `workdir`. `start()` / `stop()` / `kill()`."""

    workdir: Path
    terminals: tuple[str, ...] = ("t-0001", "t-0002")
    muni: str = "392081"
    # Several towns on one broker: muni -> its terminals (acl_text), instead of `muni`.
    towns: dict[str, tuple[str, ...]] | None = None
    prefix: str = "sukumo/v1"
    plain_listener: bool = False  # an extra mqtt:// loopback listener, no auth (development)
    persistence: bool = True
    verbose_log: bool = True  # log_type all: shows "Denied PUBLISH" lines, costs a little
    host: str = "127.0.0.1"
    port: int = 0
    plain_port: int = 0
    city_port: int = 0
    ca_file: Path = field(init=False)
    city_ca_file: Path = field(init=False)
    identities: dict[str, Identity] = field(init=False, default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.ca_file = self.workdir / "ca.pem"
        self.city_ca_file = self.workdir / "city-ca.pem"

    # -- public -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    @property
    def city_url(self) -> str:
        """Where the city's receivers connect (their certificates come from the city CA)."""
        return f"mqtts://{self.host}:{self.city_port}"

    def port_for(self, cn: str) -> int:
        return self.city_port if cn == RECEIVER_CN else self.port

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def receiver(self) -> Identity:
        return self.identities[RECEIVER_CN]

    def identity(self, cn: str) -> Identity:
        """The certificate of `cn`, made on first use (a terminal added after start works:
        the ACL is by pattern, so no broker reload is needed)."""
        self.ensure_pki()
        if cn not in self.identities:
            self.identities[cn] = self._issue_client(cn)
        return self.identities[cn]

    def ensure_pki(self) -> DevBroker:
        """Make (or reload) the CA and certificates without starting the broker."""
        if not (self.ca_file.exists() and self.city_ca_file.exists()):
            self._make_pki()
        elif not hasattr(self, "_ca_key"):
            self._load_pki()
        return self

    def start(self) -> DevBroker:
        self.ensure_pki()
        if not self.port:
            self.port = free_port()
        if not self.city_port:
            self.city_port = free_port()
        if self.plain_listener and not self.plain_port:
            self.plain_port = free_port()
        self._write_config()
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.workdir / "mosquitto.conf")],
                                      stdout=log, stderr=log, start_new_session=True)
        log.close()
        self._wait_listening()
        return self

    def stop(self) -> None:
        """Orderly stop (SIGTERM): mosquitto saves its persistence file."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: nothing saved since the last autosave."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- process ------------------------------------------------------------------------

    def _end(self, sig: int) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SyncError(f"mosquitto exited ({self._proc.returncode}); see {self.log_file}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise SyncError(f"mosquitto did not listen on {self.host}:{self.port}")

    def _write_config(self) -> None:
        (self.workdir / "acl").write_text(acl_text(self.prefix, self.muni, towns=self.towns))
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            # Started as root, mosquitto would switch to user "mosquitto", which cannot read
            # our 0600 key files; as anyone else this line is ignored.
            f"user {getpass.getuser()}",
            "per_listener_settings true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {data}/",
            "log_dest stderr",
            *(["log_type all"] if self.verbose_log else ["log_type error", "log_type warning"]),
            "log_timestamp_format %H:%M:%S",
            # A receiver falling behind must not make mosquitto drop QoS 1 batches silently
            # too early; the terminal re-sends anyway, this only saves round trips.
            "max_queued_messages 10000",
            "",
            f"listener {self.port} {self.host}",
            f"cafile {self.ca_file}",
            f"certfile {self.workdir / 'server.pem'}",
            f"keyfile {self.workdir / 'server.key'}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
            # Client id = CN: a stolen terminal's certificate cannot connect as another
            # terminal and take over (and wipe) that terminal's persistent session.
            "use_username_as_clientid true",
            "allow_anonymous false",
            f"acl_file {self.workdir / 'acl'}",
            "",
            # The city's receivers: their own CA, so no terminal certificate gets in here
            # (client ids are broker-wide: one could otherwise still pick "t-0001").
            f"listener {self.city_port} {self.host}",
            f"cafile {self.city_ca_file}",
            f"certfile {self.workdir / 'server.pem'}",
            f"keyfile {self.workdir / 'server.key'}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            f"acl_file {self.workdir / 'acl'}",
        ]
        if self.plain_listener:
            lines += ["", f"listener {self.plain_port} {self.host}", "allow_anonymous true"]
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    # -- PKI ----------------------------------------------------------------------------

    def _make_pki(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sukumo dev CA")])
        self._ca_name = name
        cert = (_builder(name, name, self._ca_key.public_key(), days=30)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(self._ca_key, hashes.SHA256()))
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.workdir / "ca.key", self._ca_key)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (_builder(_cn("localhost"), name, server_key.public_key(), days=30)
                  .add_extension(x509.SubjectAlternativeName([
                      x509.DNSName("localhost"),
                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                  .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                 critical=False)
                  .sign(self._ca_key, hashes.SHA256()))
        (self.workdir / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
        _write_key(self.workdir / "server.key", server_key)
        self._city_key = ec.generate_private_key(ec.SECP256R1())
        self._city_name = _cn("sukumo dev city CA")
        city = (_builder(self._city_name, self._city_name, self._city_key.public_key(), days=30)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(self._city_key, hashes.SHA256()))
        self.city_ca_file.write_bytes(city.public_bytes(serialization.Encoding.PEM))
        _write_key(self.workdir / "city-ca.key", self._city_key)
        for cn in (*self.terminals, *self._town_terminals(), RECEIVER_CN):
            self.identities[cn] = self._issue_client(cn)

    def _town_terminals(self) -> list[str]:
        return [tid for tids in (self.towns or {}).values() for tid in tids]

    def _load_pki(self) -> None:
        """Reuse the PKI a previous DevBroker left in `workdir` (the demo across runs)."""
        key = serialization.load_pem_private_key((self.workdir / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca_key = key
        self._ca_name = x509.load_pem_x509_certificate(self.ca_file.read_bytes()).subject
        city = serialization.load_pem_private_key(
            (self.workdir / "city-ca.key").read_bytes(), None)
        assert isinstance(city, ec.EllipticCurvePrivateKey)
        self._city_key = city
        self._city_name = x509.load_pem_x509_certificate(
            self.city_ca_file.read_bytes()).subject
        for cn in (*self.terminals, RECEIVER_CN):
            ident = Identity(cn, self.workdir / f"{cn}.pem", self.workdir / f"{cn}.key")
            self.identities[cn] = ident if ident.cert_file.exists() else self._issue_client(cn)

    def _issue_client(self, cn: str) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        city = cn == RECEIVER_CN
        cert = (_builder(_cn(cn), self._city_name if city else self._ca_name,
                         key.public_key(), days=30)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self._city_key if city else self._ca_key, hashes.SHA256()))
        ident = Identity(cn, self.workdir / f"{cn}.pem", self.workdir / f"{cn}.key")
        ident.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(ident.key_file, key)
        return ident


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days)))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
