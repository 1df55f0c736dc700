"""The city's MQTT client, as every command makes it: MQTT 5, TLS from [mqtt], and a
one-shot retained publish for the bundle commands."""

from __future__ import annotations

import logging
import os
import ssl
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from city.settings import CitySettings
from reader.errors import ConfigError
from reader.sync.endpoint import tls_context
from reader.system.i18n import _

log = logging.getLogger("city")


def new_client(settings: CitySettings, client_id: str, *, clean_start: bool) -> mqtt.Client:
    """A paho client for [mqtt], not yet connected (connect_async is the caller's, with
    the host and port of `address`)."""
    m = settings.mqtt
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.suppress_exceptions = True
    if m.url.startswith("mqtts://"):
        try:
            client.tls_set_context(tls_context(m.ca_file, m.cert_file, m.key_file))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(_("settings mqtt.cert_file / mqtt.key_file / mqtt.ca_file: "
                                "cannot be used for TLS ({error}): check that the key "
                                "belongs to the certificate and both are PEM").format(
                                    error=exc)) from None
    host, port = address(m.url)
    client.connect_async(host, port, keepalive=m.keepalive_s, clean_start=clean_start)
    return client


def address(url: str) -> tuple[str, int]:
    scheme, _sep, rest = url.partition("://")
    if scheme not in ("mqtt", "mqtts") or not rest:
        raise ConfigError(_("setting mqtt.url {url!r}: write mqtts://host:port").format(url=url))
    host, _sep, port = rest.partition(":")
    try:
        return host, int(port or (8883 if scheme == "mqtts" else 1883))
    except ValueError:
        raise ConfigError(_("setting mqtt.url {url!r}: the port is not a number").format(
            url=url)) from None


def publish_retained(settings: CitySettings, topic: str, data: bytes,
                     timeout_s: float = 10.0) -> bool:
    """Publish `data` retained at QoS 1; True once the broker has confirmed it (PUBACK
    without a failure code: mosquitto answers 0x87 when the ACL refuses)."""
    client = new_client(settings, f"city-publisher-{os.getpid()}", clean_start=True)
    refused: list[str] = []

    def on_publish(_c: object, _u: object, _mid: int, reason: mqtt.ReasonCode,
                   _p: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))

    client.on_publish = on_publish
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = client.publish(topic, data, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            log.error("bundle not published", extra={"topic": topic, "error": str(exc)})
            return False
        if refused:
            log.error("the broker refused the bundle", extra={"topic": topic,
                                                             "reason": refused[0]})
        return info.is_published() and not refused
    finally:
        client.disconnect()
        client.loop_stop()
