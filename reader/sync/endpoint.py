"""Where the city broker is and how to reach it safely (mqtt-v1 §6)."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from reader.config import MqttSettings
from reader.errors import ConfigError


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
        raise ConfigError(f"setting mqtt.url = {m.url!r}: use mqtts://host:port")
    tls = url.scheme == "mqtts"
    try:
        port = url.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"setting mqtt.url = {m.url!r}: bad port") from None
    if tls:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(m, name)
            if path is None or not path.is_file():
                raise ConfigError(f"setting mqtt.{name} = {path}: a readable file is required "
                                  "for mqtts:// (mqtt-v1 §6: a client certificate per terminal)")
    elif not (_is_loopback(url.hostname) or m.allow_insecure):
        raise ConfigError(f"setting mqtt.url = {m.url!r}: mqtt:// without TLS is allowed only "
                          "for loopback or with mqtt.allow_insecure = true")
    return Endpoint(url.hostname, port, tls)


def tls_context(ca_file: Path | None, cert_file: Path | None,
                key_file: Path | None) -> ssl.SSLContext:
    """§6: TLS 1.2+, the server checked against the city CA (name included), our client
    certificate offered. ValueError when a file is not set."""
    if ca_file is None or cert_file is None or key_file is None:
        raise ValueError("mqtt.ca_file, mqtt.cert_file and mqtt.key_file must all be set "
                         "for mqtts://")
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
