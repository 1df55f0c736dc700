"""The city service's answers to certificate requests (mqtt-v1 §7), on a link of its own.

`sukumo-city run` starts one when `[ca] dir` is set: it subscribes to every terminal's
`csr` topic (shared, so among several instances of one deployment each request reaches
one) and publishes each answer on the `cert` topic of the terminal whose session sent the
request (renewal.reply). Its own paho client, not the intake's: a slow signature never
holds up event batches, and an instance without the CA key simply does not start it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from city.ca.authority import CaError, CertificateAuthority
from city.ca.renewal import reply
from city.link import broker_address, mqtt_client
from reader.errors import ConfigError
from reader.system.i18n import _
from reader.system.logs import fields

if TYPE_CHECKING:
    from city.settings import CitySettings, MqttSettings

log = logging.getLogger(__name__)
SUBSCRIBE_WAIT_S = 10.0


class CsrResponder:
    def __init__(self, ca: CertificateAuthority, m: MqttSettings) -> None:
        self.ca = ca
        self.prefix = m.topic_prefix
        self.filter = f"$share/{m.group}-ca/{m.topic_prefix}/+/+/csr"
        self._host, self._port = broker_address(m)
        cid = m.client_id or f"city-{socket.gethostname()}-{os.getpid()}"
        # Its own client, driven by paho's own thread: it publishes only from there.
        self.client = mqtt_client(m, f"{cid}-ca")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.answered = 0

    def start(self) -> CsrResponder:
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()  # paho reconnects by itself
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if reason.is_failure:
            log.error("certificate responder: broker refused", **fields(reason=str(reason)))
            return
        client.subscribe(self.filter, qos=1)
        self.subscribed.set()
        log.info("answering certificate requests", **fields(topics=self.filter))

    def _on_message(self, client: mqtt.Client, _ud: Any, message: mqtt.MQTTMessage) -> None:
        try:
            out = reply(self.ca, self.prefix, message.topic, bytes(message.payload))
        except Exception:  # one bad request never stops the answers to the others
            log.exception("certificate request failed", **fields(topic=message.topic))
            return
        if out is not None:
            client.publish(out[0], out[1], qos=1)
            self.answered += 1


def start_responder(settings: CitySettings) -> CsrResponder | None:
    """The responder of `sukumo-city run` when `[ca] dir` is set (else None), started."""
    if settings.ca.dir is None:
        return None
    m = settings.mqtt
    try:
        ca = CertificateAuthority.load(settings.ca.dir)
    except CaError as exc:
        raise ConfigError(_("setting ca.dir = {path}: {problem}").format(
            path=settings.ca.dir, problem=exc)) from None
    responder = CsrResponder(ca, m).start()
    # Subscribed before the intake says it is ready; a broker that is down is the
    # intake's to report (paho keeps trying for both).
    if not responder.subscribed.wait(SUBSCRIBE_WAIT_S):
        log.warning("certificate responder not subscribed yet", **fields(url=m.url))
    return responder
