"""`sukumo-reader doctor`: is this terminal ready? One Check per question, each with advice.

Every check is a plain function returning a Check, so tests call them one by one and the
CLI only prints. A check never raises: whatever goes wrong becomes its ✗ and its advice,
written for a technician at the facility, not for a developer.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import socket
import ssl
import stat
from pathlib import Path

from reader.config import Settings, load_settings
from reader.errors import ConfigError, SukumoError
from reader.sync.pairs import with_pair_in_force
from reader.system import plain
from reader.system.i18n import N_, _
from reader.technician.broker_probe import (
    REVOKED,
    broker_address,
    probe_broker,
    running_link,
)
from reader.technician.check import Check
from reader.technician.storage_checks import (
    check_bundles,
    check_disk,
    check_queue,
    check_state_writable,
    user_of,
)
from reader.wire.status import PACKET_TOO_LARGE

PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
ASOUND_CARDS = Path("/proc/asound/cards")
CERT_WARN_DAYS = 30
BROKER_TIMEOUT_S = 5.0


def run_checks(config_path: Path | None, service_user: str | None = "sukumo") -> list[Check]:
    """All checks in the order a technician fixes things; the first needs only the config."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        return [Check("config", False, str(exc),
                      _("fix the named setting in reader.toml (every key is explained in "
                        "/opt/sukumo-reader/firmware_config/reader.toml), or run "
                        "`sukumo-reader provision` again"))]
    settings = with_pair_in_force(settings)  # a certificate renewed over the air (§7)
    t = settings.terminal
    checks = [Check("config", True, _("terminal {tid} ({muni}, {facility}, mode {mode})").format(
        tid=t.id, muni=t.muni, facility=t.facility, mode=t.mode))]
    checks += [check_key(settings, service_user), check_certificate(settings)]
    if settings.reader.transport == "pcsc":
        checks.append(check_pcscd())
    checks += [check_reader(settings), check_audio(settings), check_clock(),
               check_broker(settings), check_bundles(settings),
               check_state_writable(settings, service_user), check_disk(settings),
               check_queue(settings)]
    return checks


def check_key(settings: Settings, service_user: str | None) -> Check:
    path = settings.mqtt.key_file
    if path is None or not path.exists():
        return Check("terminal key", False, _("no terminal key at {path}").format(
                         path=path or "[mqtt] key_file"),
                     _("run `sukumo-reader provision` (it generates the key and a CSR)"))
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    owner = user_of(info.st_uid)
    if service_user is not None:
        try:
            user = pwd.getpwnam(service_user)
        except KeyError:
            return Check("terminal key", False,
                         _("service user {user} does not exist").format(user=repr(service_user)),
                         _("run scripts/install.sh (it creates the user), or pass --user"))
        # 0600 owned by the service user, or 0640 root-owned with the service's group.
        fine = ((mode == 0o600 and info.st_uid == user.pw_uid)
                or (mode == 0o640 and info.st_uid == 0 and info.st_gid == user.pw_gid))
    else:
        fine = mode in (0o600, 0o640)
    if not fine:
        return Check("terminal key", False,
                     _("{path} has mode {mode}, owner {owner}").format(
                         path=path, mode=f"{mode:04o}", owner=owner),
                     _("the private key must be readable only by the service: "
                       "chown {user}: {path} && chmod 0600 {path}").format(
                         user=service_user or owner, path=path))
    return Check("terminal key", True, _("{path} (mode {mode}, owner {owner})").format(
        path=path, mode=f"{mode:04o}", owner=owner))


def check_certificate(settings: Settings, now: dt.datetime | None = None) -> Check:
    from reader.technician.provision import certificate_problem, load_certificate, load_private_key

    now = now or dt.datetime.now(dt.UTC)
    cert_path, ca_path, key_path = (settings.mqtt.cert_file, settings.mqtt.ca_file,
                                    settings.mqtt.key_file)
    reimport = _("import the certificate the city CA made from this terminal's CSR: "
                 "`sukumo-reader provision --import-cert CERT --ca CA_CERT`")
    if cert_path is None or not cert_path.exists():
        return Check("certificate", False, _("no certificate at {path}").format(
                         path=cert_path or "[mqtt] cert_file"),
                     _("send tls/terminal.csr to the city CA, then {next}").format(next=reimport))
    if key_path is not None and key_path.exists() and not os.access(key_path, os.R_OK):
        # A technician of group sukumo: the key is the service's alone (0600).
        return Check("certificate", False,
                     _("not checked: this user may not read the terminal key {path} (it is "
                       "the service's)").format(path=key_path),
                     _("for this check run `sudo sukumo-reader doctor`"))
    try:
        cert = load_certificate(cert_path)
        ca = load_certificate(ca_path) if ca_path is not None and ca_path.exists() else None
        key = load_private_key(key_path) if key_path is not None and key_path.exists() else None
    except (ConfigError, OSError, ValueError) as exc:
        return Check("certificate", False, str(exc), reimport)
    if ca is None:
        return Check("certificate", False, _("no CA certificate at {path}").format(
                         path=ca_path or "[mqtt] ca_file"), reimport)
    if key is None:
        return Check("certificate", False, _("cannot check the certificate: no key"),
                     _("fix the terminal key first"))
    problem = certificate_problem(cert, key, ca, settings.terminal.id, now)
    if problem:
        return Check("certificate", False, problem, reimport)
    days = (cert.not_valid_after_utc - now).days
    expiry = f"{cert.not_valid_after_utc:%Y-%m-%d}"
    if days < CERT_WARN_DAYS:
        return Check("certificate", False,
                     _("expires on {date}, in {days} days").format(date=expiry, days=days),
                     _("ask the city CA for a new certificate from tls/terminal.csr, then "
                       "{next}").format(next=reimport))
    return Check("certificate", True,
                 _("matches the key, signed by the CA, valid until {date}").format(date=expiry))


def check_pcscd(socket_path: str | None = None) -> Check:
    # pcsc-lite honours PCSCLITE_CSOCK_NAME too (tests run their own pcscd with it).
    path = Path(socket_path or os.environ.get("PCSCLITE_CSOCK_NAME") or PCSCD_SOCKET)
    if path.is_socket():
        return Check("pcscd", True, _("socket {path}").format(path=path))
    return Check("pcscd", False, _("no pcscd socket at {path}").format(path=path),
                 _("sudo apt install pcscd libccid && sudo systemctl enable --now pcscd.socket"))


_READER_ADVICE = {
    "pcsc": N_("plug the RC-S300 in (USB), wait 3 s; `pcsc_scan` must list it. If not: is "
               "libccid installed? Is [reader] pcsc_reader a part of its name?"),
    "nfcpy": N_("plug the RC-S380 in; `lsusb` must show 054c:06c1 or 054c:06c3. Check the udev "
                "rule /etc/udev/rules.d/60-sukumo-reader.rules and that port100 is blacklisted "
                "(`lsmod | grep port100` must print nothing; reboot after install)."),
    "virtual": N_("create the feed directory ([reader] virtual_feed) or set [reader] transport"),
}


def check_reader(settings: Settings) -> Check:
    from reader.transports import create_transport

    backend = settings.reader.transport
    advice = (_(_READER_ADVICE[backend]) if backend in _READER_ADVICE
              else _("check [reader] transport"))
    feed = settings.reader.virtual_feed
    if backend == "virtual" and feed is None:
        return Check("reader", False, _("virtual: no card reader; this terminal reads no card"),
                     _('set [reader] transport = "pcsc" (RC-S300) or "nfcpy" (RC-S380), or run '
                       "`sukumo-reader provision --transport auto` with the reader plugged in; "
                       "the virtual reader is for development and needs [reader] virtual_feed"))
    if backend == "virtual" and feed is not None and not feed.is_dir():
        # describe() still lists the virtual reader then; its feed is what is missing.
        return Check("reader", False,
                     _("virtual: feed directory {path} does not exist").format(path=feed), advice)
    try:
        info = create_transport(settings.reader).describe()
    except SukumoError as exc:
        return Check("reader", False, _("{backend}: {error}").format(backend=backend, error=exc),
                     advice)
    if not info.available:
        return Check("reader", False, _("{backend}: {error}").format(
            backend=backend, error=info.note or _("not available")), advice)
    chosen = [r.name for r in info.readers if r.selected]
    if not chosen:
        seen = ", ".join(r.name for r in info.readers) or _("none")
        wanted = settings.reader.pcsc_reader if backend == "pcsc" else settings.reader.nfc_path
        detail = (_("{backend}: configured reader {wanted} not found (seen: {seen}); {note}")
                  if info.note else
                  _("{backend}: configured reader {wanted} not found (seen: {seen})"))
        return Check("reader", False, detail.format(backend=backend, wanted=repr(wanted),
                                                    seen=seen, note=info.note), advice)
    return Check("reader", True, _("{backend}: {reader}").format(backend=backend,
                                                                  reader=chosen[0]))


def check_audio(settings: Settings, cards_file: Path = ASOUND_CARDS) -> Check:
    if not settings.sound.enabled:
        return Check("audio", True, _("sound disabled ([sound] enabled = false)"))
    try:
        text = cards_file.read_text()
    except OSError:
        text = ""
    # /proc/asound/cards: " 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones"
    cards = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line[:3].strip().isdigit() and ":" in line]
    if not cards:
        return Check("audio", False, _("no sound card"),
                     _("plug the USB speaker in, or check dtparam=audio=on in "
                       "/boot/firmware/config.txt and reboot; `aplay -l` must list a card"))
    return Check("audio", True, "; ".join(cards))


def check_clock() -> Check:
    from reader.system.bootinfo import read_clock_state

    state = read_clock_state()
    now = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
    if state.synced:
        return Check("clock", True, _("synchronised ({source}), {now} UTC").format(
            source=state.source, now=now))
    return Check("clock", False, _("not synchronised ({source}), {now} UTC").format(
                     source=state.source, now=now),
                 _("taps are still recorded but marked unsynced: check the network and NTP "
                   "(`timedatectl timesync-status`; UDP port 123 must be open)"))


def check_broker(settings: Settings, timeout: float = BROKER_TIMEOUT_S) -> Check:
    url = settings.mqtt.url
    if not url:
        return Check("broker", True, _("none configured: the terminal runs offline and queues"))
    try:
        host, port, tls = broker_address(url)
    except ConfigError as exc:
        return Check("broker", False, str(exc), _("fix [mqtt] url in reader.toml"))
    where = f"{host}:{port}"
    tid = settings.terminal.id
    if tls and not (settings.mqtt.ca_file and settings.mqtt.cert_file and settings.mqtt.key_file):
        return Check("broker", False,
                     _("{where}: TLS needs [mqtt] ca_file, cert_file, key_file").format(
                         where=where),
                     _("finish provisioning: `sukumo-reader provision --import-cert CERT "
                       "--ca CA`"))
    link = running_link(settings)
    if link is not None and link.get("state") == "online":
        # Not probed: a second connection as our tid would take the daemon's session over.
        protocol = link.get("protocol")
        if link.get("no_receiver"):
            return Check("broker", False,
                         _("{where}: the running daemon is connected (MQTT {protocol}, "
                           "persistent session); not probed, but no city receiver subscribed: "
                           "the broker drops our batches (PUBACK 0x10); taps stay queued"
                           ).format(where=where, protocol=protocol),
                         _("ask the city to start its receiver (subscribed to the events "
                           "topics); the backlog drains by itself once it is"))
        if PACKET_TOO_LARGE in (link.get("problems") or []):
            return Check("broker", False,
                         _("{where}: the running daemon is connected (MQTT {protocol}), but "
                           "the broker's maximum packet size ({limit} bytes now) is too small "
                           "for our batches, or it closed the link for one").format(
                               where=where, protocol=protocol, limit=link.get("packet_limit")),
                         _("set [mqtt] broker_max_packet_bytes to the broker's maximum packet "
                           "size (or ask the city to raise it)"))
        return Check("broker", True,
                     _("{where}: the running daemon is connected (MQTT {protocol}, "
                       "persistent session); not probed").format(where=where, protocol=protocol))
    rc, error, protocol = probe_broker(settings, host, port, tls, timeout)
    if error is None and rc == "Success":
        connected = (_("{where}: TLS, connected as {tid} over MQTT {protocol} (persistent "
                       "session), broker accepted us") if tls else
                     _("{where}: connected as {tid} over MQTT {protocol} (persistent "
                       "session), broker accepted us"))
        return Check("broker", True, connected.format(where=where, tid=tid, protocol=protocol))
    return _broker_failure(where, port, tid, rc, error, protocol)


def _broker_failure(where: str, port: int, tid: str, rc: str, error: Exception | None,
                    protocol: str) -> Check:
    """The ✗ for a probe that did not get in: what it met, and who fixes it."""
    if rc == "local":
        return Check("broker", False,
                     _("{where}: cannot use our own TLS files: {error}").format(
                         where=where, error=_error_text(error)),
                     _("fix 'terminal key' and 'certificate' first"))
    if rc == REVOKED:
        return Check("broker", False,
                     _("{where}: the broker refuses this terminal's certificate: the city "
                       "revoked it").format(where=where),
                     _("ask the city why (a stolen or retired terminal); to bring it back: "
                       "`sukumo-reader provision` again (a new key and CSR), the city signs "
                       "it (`sukumo-city ca sign`), then `provision --import-cert`"))
    if isinstance(error, ssl.SSLCertVerificationError):
        return Check("broker", False,
                     _("{where}: broker certificate not trusted ({why})").format(
                         where=where, why=_verify_words(error)),
                     _("check [mqtt] ca_file is the city CA and the host name in [mqtt] url; "
                       "check the clock ('clock')"))
    if isinstance(error, ssl.SSLError) or (error is None and rc == "closed"):
        return Check("broker", False,
                     _("{where}: the broker ended the TLS session: {why} (MQTT 5 and 3.1.1 "
                       "tried)").format(where=where, why=_error_text(error) if error
                                        else _("closed before CONNACK")),
                     _("the broker does not accept our certificate: ask the city to register "
                       "CN={tid} (and check 'certificate')").format(tid=tid))
    if error is not None:
        return Check("broker", False,
                     _("cannot reach the broker at {where}: {error}").format(
                         where=where, error=_error_text(error)),
                     _("check the network (cable / Wi-Fi), the host and port in [mqtt] url, and "
                       "that the firewall lets TCP {port} out").format(port=port))
    return Check("broker", False,
                 _("{where}: the broker refused the connection ({rc}, MQTT {protocol})").format(
                     where=where, rc=rc, protocol=protocol),
                 _("ask the city to allow CN={tid} on the broker (ACL)").format(tid=tid))


# OpenSSL's verify results a technician meets (X509_V_ERR_*), in words.
_VERIFY_WORDS = {
    9: N_("its certificate is not valid yet (is the clock right?)"),
    10: N_("its certificate has expired"),
    18: N_("its certificate is self-signed, not from the city CA"),
    19: N_("it is signed by a CA that [mqtt] ca_file does not hold"),
    20: N_("it is signed by a CA that [mqtt] ca_file does not hold"),
    21: N_("it is signed by a CA that [mqtt] ca_file does not hold"),
    62: N_("its certificate is for another host name than [mqtt] url's"),
}


def _verify_words(error: ssl.SSLCertVerificationError) -> str:
    plain.keep(error.verify_message)
    words = _VERIFY_WORDS.get(error.verify_code)
    return _(words) if words else _("OpenSSL verify code {code}").format(code=error.verify_code)


def _error_text(error: BaseException | None) -> str:
    """What the probe met, in words: the system's and OpenSSL's own text goes to the log."""
    if isinstance(error, socket.gaierror):
        plain.keep(error)
        return _("unknown host name: check the host in [mqtt] url and the DNS")
    if isinstance(error, ssl.SSLError):  # an OSError whose errno is OpenSSL's, not errno's
        plain.keep(error)
        return _("TLS error {reason}").format(reason=error.reason or type(error).__name__)
    if isinstance(error, OSError):
        text = plain.os_words(error)
        return f"{text}: {error.filename}" if error.filename else text
    return str(error)
