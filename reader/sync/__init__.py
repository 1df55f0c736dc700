"""Sync to the city over MQTT (mqtt-v1): `CitySync` is the whole public surface.

client.py drives paho on one thread, connecting through session.py; the pure parts are
window.py (how much is in flight, and how long an ack is waited for), limits.py (packet
sizes both ways), backoff.py (reconnect delays with jitter), acks.py (an ack applied to
the queue) and bundles.py (§5 bundles from their topics into the TrustStore);
standalone.py is the status of the sync running alone; renewal.py renews the client
certificate over the link (§7) and pairs.py keeps the key/certificate pairs on disk so
that a power cut never leaves none. The payloads and topics themselves are the wire
model's (reader/wire).
"""

from reader.sync.client import CitySync

__all__ = ["CitySync"]
