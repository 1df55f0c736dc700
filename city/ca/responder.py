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
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from city.ca.authority import CaError, CertificateAuthority
from city.ca.renewal import reply
from reader.errors import ConfigError
from reader.sync.endpoint import tls_context
from reader.system.i18n import _
from reader.system.logs import fields

if TYPE_CHECKING:
    from city.settings import CitySettings

log = logging.getLogger(__name__)
SUBSCRIBE_WAIT_S = 10.0


class CsrResponder:
    def __init__(self, ca: CertificateAuthority, url: str, prefix: str, *,
                 ca_file: Any = None, cert_file: Any = None, key_file: Any = None,
                 client_id: str = "", group: str = "city") -> None:
        self.ca = ca
        self.prefix = prefix
        self.filter = f"$share/{group}-ca/{prefix}/+/+/csr"
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "localhost", parts.port or (
            8883 if parts.scheme == "mqtts" else 1883)
        cid = client_id or f"city-{socket.gethostname()}-{os.getpid()}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{cid}-ca",
                                  protocol=mqtt.MQTTv5)
        if parts.scheme == "mqtts":
            self.client.tls_set_context(tls_context(ca_file, cert_file, key_file))
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
    responder = CsrResponder(ca, m.url, m.topic_prefix, ca_file=m.ca_file,
                             cert_file=m.cert_file, key_file=m.key_file,
                             client_id=m.client_id, group=m.group).start()
    # Subscribed before the intake says it is ready; a broker that is down is the
    # intake's to report (paho keeps trying for both).
    if not responder.subscribed.wait(SUBSCRIBE_WAIT_S):
        log.warning("certificate responder not subscribed yet", **fields(url=m.url))
    return responder
