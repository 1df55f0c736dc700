"""How large a packet may be, both ways (issue 22).

Out: a broker drops the connection of a client whose packet exceeds its Maximum Packet
Size (mosquitto's `max_packet_size`; AWS IoT Core documents 128 KB). paho checks nothing,
and keeps an unacknowledged QoS 1 packet to send again on reconnect, so one batch too
large was a connect/disconnect cycle for ever. MQTT 5 brokers announce their limit in the
CONNACK; for 3.1.1 brokers `mqtt.broker_max_packet_bytes` says it. Batches are sized to
the smaller of the two (and `batch_max_bytes`). A broker that closes the link for size
anyway (MQTT 5: DISCONNECT 0x95; 3.1.1 gives no reason: a close, twice in a row, while a
packet larger than any the broker PUBACKed on that link waits for its PUBACK) is a named
problem in the status, and batches shrink to half of what was refused until the process
restarts.

In: the terminal announces its own Maximum Packet Size in the MQTT 5 CONNECT
(`mqtt.max_incoming_packet_bytes`), so the broker drops a message the terminal could not
hold (a 100 MB retained bundle, a 40 MB ack) instead of pushing it into the daemon's
memory. MQTT 3.1.1 has no such property: there, only the broker's own limit protects.
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt.client as mqtt

from reader.system.logs import fields

log = logging.getLogger("reader.sync.client")  # one logger for the whole city link
PACKET_TOO_LARGE = 0x95  # MQTT 5 DISCONNECT reason code "Packet too large"
MQTT_MAX = 268_435_455  # the largest Remaining Length MQTT can encode (+ 5 header bytes)
MIN_ROOM = 1024  # a batch needs at least this much room (the floor of batch_max_bytes)
SIZE_CLOSES = 2  # 3.1.1 gives no reason: this many suspicious closes in a row mean size


def publish_bytes(topic: str, payload_len: int, v5: bool) -> int:
    """The whole PUBLISH packet (QoS 1) with this payload, as the broker counts it: fixed
    header, topic, packet id, (MQTT 5) an empty property length, the payload."""
    remaining = 2 + len(topic.encode()) + 2 + (1 if v5 else 0) + payload_len
    return 1 + _varint_len(remaining) + remaining


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


class PacketLimits:
    """The outgoing packet limit of the link now, and what it learnt from refusals."""

    def __init__(self, configured: int = MQTT_MAX) -> None:
        self.configured = configured  # mqtt.broker_max_packet_bytes
        self.announced: int | None = None  # the CONNACK's Maximum Packet Size (MQTT 5)
        self.learned: int | None = None  # half of a packet the broker closed the link for
        self.refused_size: int | None = None  # the packet that got us disconnected
        self._unpubacked: dict[int, int] = {}  # paho mid -> packet bytes
        self._largest_taken = 0  # the largest packet PUBACKed on this link
        self._suspect_closes = 0

    @property
    def limit(self) -> int:
        """The largest packet the broker takes, as far as we know."""
        return min(v for v in (self.configured, self.announced, self.learned) if v)

    @property
    def problem(self) -> bool:
        """The broker closed the link for size, or its limit leaves no room for a batch."""
        return self.refused_size is not None or self.limit < MIN_ROOM + 512

    def room(self, topic: str, v5: bool) -> int:
        """The largest payload that fits the limit on `topic` (below MIN_ROOM: send no
        batch, it could only get the link closed)."""
        return self.limit - publish_bytes(topic, 0, v5) - 3  # varint growth with payload

    def connected(self, props: Any) -> None:
        """A CONNACK: the broker's announcement (absent: no limit said, e.g. 3.1.1)."""
        self.announced = getattr(props, "MaximumPacketSize", None)
        self._unpubacked.clear()
        self._largest_taken = 0

    def publish(self, client: mqtt.Client, topic: str, payload: bytes, *, v5: bool,
                retain: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish at QoS 1 if the packet fits the limit (None, logged, if it does not)."""
        size = publish_bytes(topic, len(payload), v5)
        if size > self.limit:
            log.error("message too large for the broker's packet limit; not sent", **fields(
                topic=topic, bytes=size, limit_bytes=self.limit))
            return None
        info = client.publish(topic, payload, qos=1, retain=retain)
        self.sent(info.mid, size)
        return info

    def sent(self, mid: int, packet_bytes: int) -> None:
        self._unpubacked[mid] = packet_bytes

    def puback(self, mid: int) -> None:
        size = self._unpubacked.pop(mid, None)
        if size is not None:
            self._largest_taken = max(self._largest_taken, size)

    def link_lost(self, reason_code: int | None) -> bool:
        """The link closed after its CONNACK; True when it was for a packet's size (the
        batches then shrink)."""
        largest = max(self._unpubacked.values(), default=0)
        self._unpubacked.clear()
        if reason_code == PACKET_TOO_LARGE and largest:
            self._suspect_closes = SIZE_CLOSES
        elif reason_code is None and largest > self._largest_taken:
            self._suspect_closes += 1  # no reason given (3.1.1): a size never taken yet
        else:
            self._suspect_closes = 0
        if self._suspect_closes < SIZE_CLOSES or not largest:
            return False
        self._suspect_closes = 0  # counted afresh at the new size
        self.refused_size = largest
        self.learned = max(largest // 2, MIN_ROOM + 512)  # 512: any topic, the header
        log.error("the broker closed the link for a packet too large; batches shrink",
                  **fields(refused_bytes=largest, limit_bytes=self.limit))
        return True
