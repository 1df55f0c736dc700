"""`sukumo-city publish-bundle`: put a signed bundle (mqtt-v1 §5) on its topic, retained,
so every terminal of the town (or the one terminal, for config) gets it on connect.

A bundle signed elsewhere (`--signed FILE`, binary or hex) is published as it is; or a
JSON payload is signed here with an ops key (`--payload`, `--signing-key`, `--kid`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from city.settings import CitySettings, require_broker
from reader.card.cose import CoseError, decode_sign1, private_key_from_scalar, sign1
from reader.errors import ConfigError
from reader.sync.endpoint import tls_context
from reader.system.i18n import _
from reader.wire.topics import BUNDLE_KINDS, Topics


def read_bundle_file(path: Path) -> bytes:
    """Raw COSE, or hex text (the spec's vectors and many tools write hex)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_("cannot read {path}: {reason}").format(
            path=path, reason=exc.strerror)) from None
    try:
        return bytes.fromhex(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        return raw


def declared_kind(data: bytes) -> str | None:
    try:
        kind = decode_sign1(data).payload_map().get("kind")
    except CoseError:
        return None
    return kind if kind in BUNDLE_KINDS else None


def sign_payload(payload: Path, signing_key: Path, kid: str, muni: str) -> bytes:
    """Sign a JSON payload (byte fields `kid`, `pk`, `serials` given as hex)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    doc = json.loads(payload.read_text())
    doc.setdefault("muni", muni)
    doc.setdefault("issued", int(time.time()))
    for entry in (*doc.get("issuers", ()), *doc.get("ops", ())):
        for name in ("kid", "pk"):
            entry[name] = bytes.fromhex(entry[name])
    if "serials" in doc:
        doc["serials"] = [bytes.fromhex(s) for s in doc["serials"]]
    key_text = signing_key.read_bytes()
    key: Any = (load_pem_private_key(key_text, None) if key_text.startswith(b"-----")
                else private_key_from_scalar(bytes.fromhex(key_text.decode().strip())))
    return sign1(doc, key, bytes.fromhex(kid))


def publish_bundle(settings: CitySettings, data: bytes, *, muni: str, tid: str = "",
                   kind: str | None = None) -> str:
    """Publish `data` retained on its topic and wait for the broker's PUBACK; the topic.
    ConfigError for an operator mistake, TimeoutError when the broker never took it."""
    require_broker(settings)
    kind = kind or declared_kind(data)
    if kind is None:
        raise ConfigError(_("cannot tell the bundle's kind: give --kind"))
    if kind == "config" and not tid:
        raise ConfigError(_("a config bundle goes to one terminal: give --tid"))
    m = settings.mqtt
    topic = Topics(m.topic_prefix, muni, tid or "-").bundle(kind)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"city-publisher-{os.getpid()}")
    if m.url.startswith("mqtts://"):
        client.tls_set_context(tls_context(m.ca_file, m.cert_file, m.key_file))
    host, _sep, port = m.url.split("://", 1)[1].partition(":")
    client.connect(host, int(port or (8883 if m.url.startswith("mqtts") else 1883)))
    client.loop_start()
    try:
        info = client.publish(topic, data, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise TimeoutError(topic)
    finally:
        client.disconnect()
        client.loop_stop()
    return topic
