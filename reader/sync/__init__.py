"""Sync to the city over MQTT (mqtt-v1): `CitySync` is the whole public surface.

client.py drives paho on one thread; the pure parts are topics.py (the §1 table),
messages.py (§2-§4 payloads), window.py (how much is in flight), backoff.py (reconnect
delays with jitter) and bundles.py (§5 bundles from their topics into the TrustStore).
"""

from .client import CitySync, SyncCounters

__all__ = ["CitySync", "SyncCounters"]
