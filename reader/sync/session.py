"""How a terminal connects (mqtt-v1 §1), in one place for the daemon and doctor's probe.

Client id = tid, the terminal's certificate, a persistent session. MQTT 5 first: clean
start off and a session expiry of 7 days. mqtt-v1 allows 3.1.1 as a fallback, and some
brokers a city runs speak nothing else: RabbitMQ's MQTT plugin (Debian 12) closes the
connection to an MQTT 5 CONNECT without any CONNACK; a broker that answers says
"unsupported protocol version" (5: 0x84; 3.1.1: code 1, which paho reports the same way).
Either way the next attempt, at once, is 3.1.1 with clean session off (its persistent
session, kept by the broker until cleaned) and without the v5-only parts: no properties,
so no session expiry, and PUBACKs without a reason code (no "no matching subscribers").
A 3.1.1 attempt that fails the same way goes back to 5, after the usual backoff.

Doctor connects with the same `make_client`, so what it reports is what the daemon gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from reader.config import Settings
from reader.sync.endpoint import Endpoint, tls_context
from reader.system.logs import fields
from reader.wire.topics import Topics

SESSION_EXPIRY_S = 7 * 24 * 3600  # §1: the broker keeps our session (acks, subscriptions)
MQTT5, MQTT311 = "5", "3.1.1"
_PAHO = {MQTT5: mqtt.MQTTv5, MQTT311: mqtt.MQTTv311}
_UNSUPPORTED_VERSION = (0x84, 0x01)  # CONNACK: MQTT 5 reason code, 3.1.1 return code
log = logging.getLogger("reader.sync.client")


def make_client(settings: Settings, endpoint: Endpoint, protocol: str,
                will: bytes | None = None, inflight: tuple[int, int] = (20, 100),
                connect_timeout: float = 5.0,
                tls_pair: tuple[Path, Path] | None = None) -> mqtt.Client:
    """A paho client for this terminal, its connection prepared (connect_async: the caller
    calls reconnect()). `inflight`: paho's (max in flight, max queued) messages. TLS files
    are read here (OSError / ValueError when unusable); `tls_pair` (certificate, key) is a
    pair renewed over the air (mqtt-v1 §7), used instead of the configured one."""
    m = settings.mqtt
    tid = settings.terminal.id
    v5 = protocol == MQTT5
    client = (mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tid, protocol=mqtt.MQTTv5)
              if v5 else
              mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tid,
                          protocol=_PAHO[protocol], clean_session=False))
    client.suppress_exceptions = True
    client.on_subscribe = log_refused_subscriptions
    client.connect_timeout = connect_timeout
    client.max_inflight_messages_set(inflight[0])
    client.max_queued_messages_set(inflight[1])
    if will is not None:
        client.will_set(Topics(m.topic_prefix, settings.terminal.muni, tid).status, will,
                        qos=1, retain=True)
    if endpoint.tls:
        cert_file, key_file = tls_pair or (m.cert_file, m.key_file)
        client.tls_set_context(tls_context(m.ca_file, cert_file, key_file))
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        # The broker drops what we could not hold (reader/sync/limits.py); 3.1.1 has no way.
        props.MaximumPacketSize = m.max_incoming_packet_bytes
        # clean_start False explicitly: paho's default (MQTT_CLEAN_START_FIRST_ONLY) would
        # wipe the broker-side session, and the acks waiting in it, at every process start.
        client.connect_async(endpoint.host, endpoint.port, keepalive=m.keepalive_s,
                             clean_start=False, properties=props)
    else:
        client.connect_async(endpoint.host, endpoint.port, keepalive=m.keepalive_s)
    return client


def log_refused_subscriptions(_c: mqtt.Client, _ud: Any, _mid: int, reasons: list[Any],
                              _props: Any) -> None:
    """paho's on_subscribe: a topic the broker refused is an ACL mistake, for the log."""
    for reason in reasons:
        if reason.is_failure:
            log.error("broker refused a subscription", **fields(reason=str(reason)))


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """For paho callbacks: no exception may reach paho's loop; log it and carry on."""
    def wrapper(self: Any, *args: Any) -> None:
        try:
            fn(self, *args)
        except Exception:
            log.exception("error in mqtt callback", **fields(callback=fn.__name__))
    wrapper.__name__ = fn.__name__
    return wrapper


def refused_version(reason: Any) -> bool:
    """A CONNACK saying the broker does not speak this protocol version."""
    return getattr(reason, "value", None) in _UNSUPPORTED_VERSION


def fallback(protocol: str) -> str:
    """The protocol to try next when `protocol` was refused (or closed before CONNACK)."""
    return MQTT311 if protocol == MQTT5 else MQTT5
