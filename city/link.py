"""The city's MQTT 5 link: connect (health says why not, with the fix), subscribe to the
shared topics, hand every message to the intake, and publish the acks the workers give.

One thread (the caller of `run`) does all the socket I/O: paho's network loop is driven
here through its documented external-loop calls (`loop_read`, `loop_write`,
`loop_misc`), and a worker's ack reaches it through `send`, which only queues and wakes
this thread — paho, called from a second thread while the first is in its loop, would
write to the TLS socket from both at once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from city.health import Health, PahoErrors
from city.settings import MqttSettings
from reader.errors import ConfigError
from reader.sync.endpoint import tls_context
from reader.system.i18n import _
from reader.system.logs import fields
from reader.wire.topics import events_filter

log = logging.getLogger("city.link")


def mqtt_client(m: MqttSettings, client_id: str) -> mqtt.Client:
    """A paho MQTT 5 client with [mqtt]'s TLS, not connected: every city client is one."""
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
    return client


def broker_address(m: MqttSettings) -> tuple[str, int]:
    url = urlsplit(m.url)
    return url.hostname or "", url.port or (8883 if url.scheme == "mqtts" else 1883)


def publish_retained(m: MqttSettings, topic: str, data: bytes,
                     timeout_s: float = 10.0) -> bool:
    """One retained QoS 1 publish (a signed bundle), on a client of its own that paho's
    own thread drives; True once the broker confirmed it (PUBACK without a failure code:
    mosquitto answers 0x87 when the ACL refuses)."""
    client = mqtt_client(m, f"city-publisher-{os.getpid()}")
    refused: list[str] = []

    def on_publish(_c: object, _u: object, _mid: int, reason: mqtt.ReasonCode,
                   _p: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))

    client.on_publish = on_publish
    host, port = broker_address(m)
    client.connect_async(host, port, keepalive=m.keepalive_s, clean_start=True)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = client.publish(topic, data, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            log.error("bundle not published", **fields(topic=topic, error=str(exc)))
            return False
        if refused:
            log.error("the broker refused the bundle", **fields(topic=topic,
                                                               reason=refused[0]))
        return info.is_published() and not refused
    finally:
        client.disconnect()
        client.loop_stop()


class BrokerLink:
    def __init__(self, settings: MqttSettings, client_id: str,
                 on_message: Callable[[str, bytes], None], health: Health, *,
                 ready_file: Path | None = None) -> None:
        self.settings = settings
        self.health = health
        self.client_id = client_id
        self.on_message = on_message
        self.ready_file = ready_file
        self.up = False  # connected to the broker
        self.acks_sent = 0
        self.stopping = threading.Event()
        self.outbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = mqtt_client(self.settings, self.client_id)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(10000)
        self.paho_errors = PahoErrors()
        client.enable_logger(self.paho_errors.logger)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = lambda _c, _u, msg: self.on_message(msg.topic, bytes(msg.payload))
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if reason.is_failure:
            self.health.broker_failed(f"CONNACK {reason}", url=self.settings.url)
            return
        self._state(True)
        group, prefix = self.settings.group, self.settings.topic_prefix
        client.subscribe([(events_filter(prefix, group), 1),
                          (f"$share/{group}/{prefix}/+/+/status", 1)])

    def _on_subscribe(self, *_args: Any) -> None:
        log.info("subscribed", **fields(group=self.settings.group, client_id=self.client_id))
        if self.ready_file:
            self.ready_file.write_text(str(os.getpid()))

    def _on_disconnect(self, _c: Any, _ud: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not self.stopping.is_set():
            self._state(False, str(reason))

    def _state(self, up: bool, why: str = "") -> None:
        if up:
            self.health.broker_up(url=self.settings.url)
        elif self.up:
            self.health.broker_lost(why, url=self.settings.url)
        else:  # closed before its CONNACK: what paho last logged says why (TLS 1.3)
            error = self.paho_errors.take()
            if error is not None or self.health.broker_state == "connecting":
                self.health.broker_failed(error or why, url=self.settings.url)
        self.up = up

    def _connect(self) -> bool:
        """One connection attempt; False (after saying why and how to fix it) if it failed."""
        m = self.settings
        host, port = broker_address(m)
        try:
            self.client.connect(host, port, keepalive=m.keepalive_s, clean_start=True)
            return True
        except OSError as exc:  # ssl.SSLError too: health names the problem and its fix
            self.health.broker_failed(exc, url=m.url, ca_file=str(m.ca_file),
                                      cert_file=str(m.cert_file))
        return False

    def run(self) -> None:
        """Connect, serve, reconnect (with backoff) until `stop()`."""
        backoff = 0.5
        while not self.stopping.is_set():
            if self._connect():
                backoff = 0.5
                self._serve()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, self.settings.reconnect_max_s)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def close(self) -> None:
        """The last acks out, then an orderly DISCONNECT."""
        self._send_acks()
        for _n in range(10):
            self.client.loop(timeout=0.05)
        self.client.disconnect()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            sock = self.client.socket()
            if sock is None:
                return
            # TLS may hold decrypted bytes select() cannot see.
            pending = getattr(sock, "pending", lambda: 0)()
            wants = [sock] if self.client.want_write() else []
            readable, _w, _x = select.select([sock, self._wake_r], wants, [],
                                             0 if pending else 1.0)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
                self._send_acks()
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            if sock in readable or pending:
                rc = self.client.loop_read()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.client.want_write():
                rc = self.client.loop_write()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                rc = self.client.loop_misc()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._state(False, mqtt.error_string(rc))
                return

    def send(self, topic: str, payload: bytes) -> None:
        """Publish (QoS 1) from any thread: queued for the link's thread, which is woken."""
        self.outbox.append((topic, payload))
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def _send_acks(self) -> None:
        while self.outbox:
            topic, payload = self.outbox.popleft()
            self.client.publish(topic, payload, qos=1)
            self.acks_sent += 1
