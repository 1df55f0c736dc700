"""The doctor's broker check: one real TLS + MQTT CONNECT, made as the daemon makes it.

Same client (reader.sync.session.make_client): client id = tid, our certificate, the
persistent session, MQTT 5 first and 3.1.1 when the broker refuses 5. So doctor and daemon
cannot disagree about whether, and how, this terminal gets in. Two precautions for
sharing the daemon's identity: the probe never acks, so acks waiting in the session stay
there for the daemon; and while the daemon is running and connected it is not probed at
all (a second connection as the tid would take the session over): doctor reports the
daemon's own link from status.json instead. Kept apart from doctor.py so the probe (paho,
TLS) is read in one place; doctor turns its answer into a ✓ / ✗ with advice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

from reader.config import Settings
from reader.errors import ConfigError
from reader.system.i18n import _

FRESH_S = 10.0  # status.json older than this: the daemon is not looking after its link
REVOKED = "revoked"  # probe_broker's reason when the broker said our certificate is revoked
REVOKED_ALERT = "CERTIFICATE_REVOKED"  # OpenSSL's name of the TLS alert (sslv3 alert 44)


def probe_broker(settings: Settings, host: str, port: int, tls: bool,
                 timeout: float) -> tuple[str, Exception | None, str]:
    """CONNECT as the daemon does and wait for CONNACK: (reason, None, protocol),
    ("closed", None, protocol), ("", error, protocol), ("local", error, protocol) when
    our own certificate or key cannot be loaded, or (REVOKED, None, protocol) when the
    broker's TLS alert says our certificate is revoked. `protocol`: the MQTT version last
    tried."""
    from reader.sync.session import MQTT5, fallback, refused_version

    protocol = MQTT5
    while True:
        reason, closed, error = _attempt(settings, host, port, tls, protocol, timeout)
        if error is not None:
            return ("local" if closed else ""), error, protocol
        refused = (closed and reason is None) or refused_version(reason)
        if refused and protocol == MQTT5:
            protocol = fallback(protocol)  # what the daemon does next: 3.1.1 at once
            continue
        if reason is not None:
            return str(reason), None, protocol
        if closed:
            return (REVOKED if tls and _revoked(settings, host, port, timeout) else "closed",
                    None, protocol)
        return "", TimeoutError(_("no CONNACK in {seconds} s").format(
            seconds=f"{timeout:.0f}")), protocol


def _attempt(settings: Settings, host: str, port: int, tls: bool, protocol: str,
             timeout: float) -> tuple[Any, bool, Exception | None]:
    """One CONNECT: (CONNACK reason or None, closed before it, error). With an error,
    `closed` True means our own TLS files could not be used."""
    import paho.mqtt.client as mqtt

    from reader.sync.endpoint import Endpoint
    from reader.sync.session import make_client

    try:
        client = make_client(settings, Endpoint(host, port, tls), protocol,
                             connect_timeout=timeout)
    except (OSError, ValueError) as exc:
        return None, True, exc
    client.manual_ack_set(True)  # what the session holds for the daemon stays there
    answer: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    try:
        client.reconnect()
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                return (answer or [None])[0], True, None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return None, False, exc
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    return (answer or [None])[0], False, None


def _revoked(settings: Settings, host: str, port: int, timeout: float) -> bool:
    """After a close before CONNACK: does the broker's TLS alert say our certificate is
    revoked (its CRL)? paho may meet the closed socket on a write first and never read
    the alert, so read it here: a bare handshake, then wait for the broker's first byte."""
    import socket
    import ssl

    from reader.sync.endpoint import tls_context
    from reader.sync.pairs import with_pair_in_force

    m = with_pair_in_force(settings).mqtt
    try:
        ctx = tls_context(m.ca_file, m.cert_file, m.key_file)
        with socket.create_connection((host, port), timeout=min(timeout, 3.0)) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as conn:
            conn.recv(1)  # MQTT brokers say nothing first: only an alert comes
    except ssl.SSLError as exc:
        return REVOKED_ALERT in str(exc)
    except (OSError, ValueError):
        return False
    return False


def running_link(settings: Settings, now: float | None = None) -> dict[str, Any] | None:
    """The sync part of the running daemon's fresh status.json; None when not running."""
    try:
        status = json.loads(settings.paths.status_file.read_text())
        pid, updated = status["pid"], status["updated_at"]
        os.kill(pid, 0)
        at = dt.datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
    except PermissionError:
        return None  # alive, but not ours to judge: probe as if it were not running
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not status.get("running") or (now or time.time()) - at > FRESH_S:
        return None
    sync = status.get("sync")
    return sync if isinstance(sync, dict) else None


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) from mqtts://host[:port] or mqtt://host[:port]."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(_("[mqtt] url {url}: use mqtts://HOST[:PORT]").format(url=repr(url)))
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:  # a port that is not a number: a check never raises
        raise ConfigError(_("[mqtt] url {url}: the port is not a number").format(
            url=repr(url))) from None
    return parts.hostname, port, tls
