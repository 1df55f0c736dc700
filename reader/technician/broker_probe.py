"""The doctor's broker check: one real TLS + MQTT CONNECT, with the daemon's TLS set-up.

Kept apart from doctor.py so the probe (paho, TLS) is read in one place; doctor turns
its answer into a ✓ / ✗ with advice.
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit

from reader.config import Settings
from reader.errors import ConfigError
from reader.sync.endpoint import tls_context


def probe_broker(settings: Settings, host: str, port: int, tls: bool,
                  timeout: float) -> tuple[str, Exception | None]:
    """CONNECT once and wait for CONNACK: (reason, None), ("closed", None), ("", error), or
    ("local", error) when our own certificate or key cannot be loaded."""
    import paho.mqtt.client as mqtt

    # Not the terminal's own client id: a doctor session must not take over (and with a
    # clean session, wipe) the running daemon's persistent session. A broker that makes
    # the client id the certificate's CN overrides it, so doctor probes only while the
    # daemon is not online (doctor.check_broker).
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                         client_id=f"{settings.terminal.id}-doctor", clean_session=True)
    client.connect_timeout = timeout
    answer: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(str(reason))
    if tls:
        try:  # the daemon's own TLS set-up (TLS 1.2+, city CA, our certificate)
            client.tls_set_context(tls_context(settings.mqtt.ca_file, settings.mqtt.cert_file,
                                               settings.mqtt.key_file))
        except (OSError, ValueError) as exc:
            return "local", exc
    try:
        client.connect(host, port, keepalive=max(int(timeout) * 2, 5))
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                return "closed", None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return "", exc
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    return (answer[0], None) if answer else ("", TimeoutError(f"no CONNACK in {timeout:.0f} s"))


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) from mqtts://host[:port] or mqtt://host[:port]."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"[mqtt] url {url!r}: use mqtts://HOST[:PORT]")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:  # a port that is not a number: a check never raises
        raise ConfigError(f"[mqtt] url {url!r}: the port is not a number") from None
    return parts.hostname, port, tls
