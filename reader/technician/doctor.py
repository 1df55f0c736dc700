"""`sukumo-reader doctor`: is this terminal ready? One Check per question, each with advice.

Every check is a plain function returning a Check, so tests call them one by one and the
CLI only prints. A check never raises: whatever goes wrong becomes its ✗ and its advice,
written for a technician at the facility, not for a developer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shutil
import ssl
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reader.config import Settings, load_settings
from reader.errors import ConfigError, SukumoError
from reader.technician.broker_probe import broker_address, probe_broker

PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
ASOUND_CARDS = Path("/proc/asound/cards")
CERT_WARN_DAYS = 30
BUNDLE_MAX_AGE_DAYS = 14
DISK_MIN_FREE_MB = 200
BROKER_TIMEOUT_S = 5.0
BUNDLES = ("trust.cbor", "denylist.cbor")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    advice: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_checks(config_path: Path | None, service_user: str | None = "sukumo") -> list[Check]:
    """All checks in the order a technician fixes things; the first needs only the config."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        return [Check("config", False, str(exc),
                      "fix the named setting in reader.toml (every key is explained in "
                      "/opt/sukumo-reader/firmware_config/reader.toml), or run "
                      "`sukumo-reader provision` again")]
    checks = [Check("config", True, f"terminal {settings.terminal.id} ({settings.terminal.muni}, "
                                   f"{settings.terminal.facility}, mode {settings.terminal.mode})")]
    checks += [check_key(settings, service_user), check_certificate(settings)]
    if settings.reader.transport == "pcsc":
        checks.append(check_pcscd())
    checks += [check_reader(settings), check_audio(settings), check_clock(),
               check_broker(settings), check_bundles(settings), check_disk(settings),
               check_queue(settings)]
    return checks


def check_key(settings: Settings, service_user: str | None) -> Check:
    path = settings.mqtt.key_file
    if path is None or not path.exists():
        return Check("terminal key", False, f"no terminal key at {path or '[mqtt] key_file'}",
                     "run `sukumo-reader provision` (it generates the key and a CSR)")
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    owner = _user_of(info.st_uid)
    if service_user is not None:
        try:
            user = pwd.getpwnam(service_user)
        except KeyError:
            return Check("terminal key", False, f"service user {service_user!r} does not exist",
                         "run scripts/install.sh (it creates the user), or pass --user")
        # 0600 owned by the service user, or 0640 root-owned with the service's group.
        fine = ((mode == 0o600 and info.st_uid == user.pw_uid)
                or (mode == 0o640 and info.st_uid == 0 and info.st_gid == user.pw_gid))
    else:
        fine = mode in (0o600, 0o640)
    if not fine:
        fix_user = service_user or owner
        return Check("terminal key", False, f"{path} has mode {mode:04o}, owner {owner}",
                     f"the private key must be readable only by the service: "
                     f"chown {fix_user}: {path} && chmod 0600 {path}")
    return Check("terminal key", True, f"{path} (mode {mode:04o}, owner {owner})")


def check_certificate(settings: Settings, now: dt.datetime | None = None) -> Check:
    from reader.technician.provision import certificate_problem, load_certificate, load_private_key

    now = now or dt.datetime.now(dt.UTC)
    cert_path, ca_path, key_path = (settings.mqtt.cert_file, settings.mqtt.ca_file,
                                    settings.mqtt.key_file)
    reimport = ("import the certificate the city CA made from this terminal's CSR: "
                "`sukumo-reader provision --import-cert CERT --ca CA_CERT`")
    if cert_path is None or not cert_path.exists():
        return Check("certificate", False, f"no certificate at {cert_path or '[mqtt] cert_file'}",
                     "send tls/terminal.csr to the city CA, then " + reimport)
    try:
        cert = load_certificate(cert_path)
        ca = load_certificate(ca_path) if ca_path is not None and ca_path.exists() else None
        key = load_private_key(key_path) if key_path is not None and key_path.exists() else None
    except (ConfigError, OSError, ValueError) as exc:
        return Check("certificate", False, str(exc), reimport)
    if ca is None:
        return Check("certificate", False, f"no CA certificate at {ca_path or '[mqtt] ca_file'}",
                     reimport)
    if key is None:
        return Check("certificate", False, "cannot check the certificate: no key",
                     "fix the terminal key first")
    problem = certificate_problem(cert, key, ca, settings.terminal.id, now)
    if problem:
        return Check("certificate", False, problem, reimport)
    days = (cert.not_valid_after_utc - now).days
    expiry = f"{cert.not_valid_after_utc:%Y-%m-%d}"
    if days < CERT_WARN_DAYS:
        return Check("certificate", False, f"expires on {expiry}, in {days} days",
                     "ask the city CA for a new certificate from tls/terminal.csr, then "
                     + reimport)
    return Check("certificate", True, f"matches the key, signed by the CA, valid until {expiry}")


def check_pcscd(socket_path: str | None = None) -> Check:
    # pcsc-lite honours PCSCLITE_CSOCK_NAME too (tests run their own pcscd with it).
    path = Path(socket_path or os.environ.get("PCSCLITE_CSOCK_NAME") or PCSCD_SOCKET)
    if path.is_socket():
        return Check("pcscd", True, f"socket {path}")
    return Check("pcscd", False, f"no pcscd socket at {path}",
                 "sudo apt install pcscd libccid && sudo systemctl enable --now pcscd.socket")


_READER_ADVICE = {
    "pcsc": "plug the RC-S300 in (USB), wait 3 s; `pcsc_scan` must list it. If not: is "
            "libccid installed? Is [reader] pcsc_reader a part of its name?",
    "nfcpy": "plug the RC-S380 in; `lsusb` must show 054c:06c1 or 054c:06c3. Check the udev "
             "rule /etc/udev/rules.d/60-sukumo-reader.rules and that port100 is blacklisted "
             "(`lsmod | grep port100` must print nothing; reboot after install).",
    "virtual": "create the feed directory ([reader] virtual_feed) or set [reader] transport",
}


def check_reader(settings: Settings) -> Check:
    from reader.transports import create_transport

    backend = settings.reader.transport
    advice = _READER_ADVICE.get(backend, "check [reader] transport")
    feed = settings.reader.virtual_feed
    if backend == "virtual" and feed is not None and not feed.is_dir():
        # describe() still lists the virtual reader then; its feed is what is missing.
        return Check("reader", False, f"virtual: feed directory {feed} does not exist", advice)
    try:
        info = create_transport(settings.reader).describe()
    except SukumoError as exc:
        return Check("reader", False, f"{backend}: {exc}", advice)
    if not info.available:
        return Check("reader", False, f"{backend}: {info.note or 'not available'}", advice)
    chosen = [r.name for r in info.readers if r.selected]
    if not chosen:
        seen = ", ".join(r.name for r in info.readers) or "none"
        wanted = settings.reader.pcsc_reader if backend == "pcsc" else settings.reader.nfc_path
        return Check("reader", False, f"{backend}: configured reader {wanted!r} not found "
                                      f"(seen: {seen}){'; ' + info.note if info.note else ''}",
                     advice)
    return Check("reader", True, f"{backend}: {chosen[0]}")


def check_audio(settings: Settings, cards_file: Path = ASOUND_CARDS) -> Check:
    if not settings.sound.enabled:
        return Check("audio", True, "sound disabled ([sound] enabled = false)")
    try:
        text = cards_file.read_text()
    except OSError:
        text = ""
    # /proc/asound/cards: " 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones"
    cards = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line[:3].strip().isdigit() and ":" in line]
    if not cards:
        return Check("audio", False, "no sound card",
                     "plug the USB speaker in, or check dtparam=audio=on in "
                     "/boot/firmware/config.txt and reboot; `aplay -l` must list a card")
    return Check("audio", True, "; ".join(cards))


def check_clock() -> Check:
    from reader.system.bootinfo import read_clock_state

    state = read_clock_state()
    now = dt.datetime.now(dt.UTC)
    if state.synced:
        return Check("clock", True, f"synchronised ({state.source}), {now:%Y-%m-%d %H:%M} UTC")
    return Check("clock", False, f"not synchronised ({state.source}), {now:%Y-%m-%d %H:%M} UTC",
                 "taps are still recorded but marked unsynced: check the network and NTP "
                 "(`timedatectl timesync-status`; UDP port 123 must be open)")


def check_broker(settings: Settings, timeout: float = BROKER_TIMEOUT_S) -> Check:
    url = settings.mqtt.url
    if not url:
        return Check("broker", True, "none configured: the terminal runs offline and queues")
    try:
        host, port, tls = broker_address(url)
    except ConfigError as exc:
        return Check("broker", False, str(exc), "fix [mqtt] url in reader.toml")
    where = f"{host}:{port}"
    if tls and not (settings.mqtt.ca_file and settings.mqtt.cert_file and settings.mqtt.key_file):
        return Check("broker", False, f"{where}: TLS needs [mqtt] ca_file, cert_file, key_file",
                     "finish provisioning: `sukumo-reader provision --import-cert CERT --ca CA`")
    rc, error = probe_broker(settings, host, port, tls, timeout)
    if error is None and rc == "Success":
        return Check("broker", True, f"{where}: {'TLS, ' if tls else ''}connected as "
                                     f"{settings.terminal.id}-doctor, broker accepted us")
    if rc == "local":
        return Check("broker", False, f"{where}: cannot use our own TLS files: {error}",
                     "fix 'terminal key' and 'certificate' first")
    if isinstance(error, ssl.SSLCertVerificationError):
        return Check("broker", False, f"{where}: broker certificate not trusted "
                                      f"({error.verify_message})",
                     "check [mqtt] ca_file is the city CA and the host name in [mqtt] url; "
                     "check the clock ('clock')")
    if isinstance(error, ssl.SSLError) or (error is None and rc == "closed"):
        return Check("broker", False, f"{where}: the broker ended the TLS session: "
                                      f"{error or 'closed before CONNACK'}",
                     "the broker does not accept our certificate: ask the city to register "
                     f"CN={settings.terminal.id} (and check 'certificate')")
    if error is not None:
        return Check("broker", False, f"cannot reach the broker at {where}: {error}",
                     "check the network (cable / Wi-Fi), the host and port in [mqtt] url, and "
                     f"that the firewall lets TCP {port} out")
    return Check("broker", False, f"{where}: the broker refused the connection ({rc})",
                 f"ask the city to allow CN={settings.terminal.id} on the broker (ACL)")


def check_bundles(settings: Settings, now: float | None = None) -> Check:
    now = time.time() if now is None else now
    folder = settings.paths.bundle_dir
    missing = [name for name in BUNDLES if not (folder / name).is_file()]
    advice = ("bundles arrive from the broker on connect (check 'broker'); offline, import "
              "them from the city's USB stick: `sukumo-reader bundle import FILE`")
    if missing:
        return Check("bundles", False, f"missing in {folder}: {', '.join(missing)}", advice)
    ages = {name: (now - (folder / name).stat().st_mtime) / 86400 for name in BUNDLES}
    detail = ", ".join(f"{name.removesuffix('.cbor')} {age:.1f} days old"
                       for name, age in ages.items())
    if max(ages.values()) > BUNDLE_MAX_AGE_DAYS:
        return Check("bundles", False, detail, advice)
    return Check("bundles", True, detail)


def check_disk(settings: Settings, min_free_mb: int = DISK_MIN_FREE_MB) -> Check:
    folder = settings.paths.state_dir
    if not folder.is_dir():
        return Check("disk", False, f"state directory {folder} does not exist",
                     "run `sukumo-reader provision` (it creates it)")
    usage = shutil.disk_usage(folder)
    free_mb = usage.free // 2**20
    detail = f"{free_mb} MiB free of {usage.total // 2**20} MiB at {folder}"
    if free_mb < min_free_mb:
        return Check("disk", False, detail,
                     "free space: `journalctl --vacuum-size=50M`, remove old files; the "
                     "queue needs room to keep taps while offline")
    return Check("disk", True, detail)


def check_queue(settings: Settings, now: dt.datetime | None = None) -> Check:
    path = settings.paths.database
    if not path.exists():
        from reader.queue.seqmark import mark_path

        if not mark_path(path).exists():  # the mark outlives the file: a first start
            return Check("queue", True, "no taps recorded yet")
        return Check("queue", False, f"{path} is missing where a queue existed (its seq "
                     f"mark {mark_path(path)} is there)",
                     "start the daemon (it starts a fresh queue, seq continuing above the "
                     "mark); look for where the file went; call the city support")
    try:
        from reader.queue import EventQueue

        # on_corrupt="raise": a technician tool never moves the daemon's file aside.
        with EventQueue.open(path, warn_mb=settings.queue.warn_mb,
                             budget_mb=settings.queue.budget_mb, on_corrupt="raise",
                             create=False) as queue:
            summary = queue.summary()
    except (SukumoError, ImportError) as exc:
        return Check("queue", False, f"{path}: {exc}",
                     "see `sukumo-reader queue summary`; keep the file, call the city support")
    pending, rejected = summary.pending, summary.rejected  # pending includes in flight
    oldest = summary.oldest_at
    detail = f"{pending} waiting, {rejected} rejected, oldest {oldest or '-'}"
    alarms = list(getattr(summary, "alarms", []) or [])
    if alarms or summary.over_warn:
        why = "; ".join(map(str, alarms)) or f"database over {settings.queue.warn_mb} MiB"
        return Check("queue", False, f"{detail}; {why}",
                     "see `sukumo-reader queue summary`; check 'broker' so the backlog drains")
    if oldest and _age_days(oldest, now) > 1:
        return Check("queue", False, detail + " (not draining for over a day)",
                     "the terminal cannot deliver taps: fix 'broker', then watch `status`")
    return Check("queue", True, detail)


def _age_days(rfc3339: str, now: dt.datetime | None) -> float:
    try:
        then = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return ((now or dt.datetime.now(dt.UTC)) - then).total_seconds() / 86400


def _user_of(uid: int) -> str:
    with contextlib.suppress(KeyError):
        return pwd.getpwuid(uid).pw_name
    return str(uid)
