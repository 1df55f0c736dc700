"""Signed bundles (mqtt-v1 §5): the trust, denylist and config a terminal holds.

`TrustStore` (store.py) verifies, holds and saves them; versions.py says which version
may replace the one held; files.py reads one from a file for offline provisioning. The
MQTT side of their arrival is reader/sync/bundles.py.
"""

from reader.bundles.snapshot import TrustedKey
from reader.bundles.store import KINDS, TrustStore

__all__ = ["KINDS", "TrustStore", "TrustedKey"]
