"""Signed bundles arriving on their topics (mqtt-v1 §5) → `TrustStore.apply`, and the
subscriptions to the denylists of the neighbouring towns a terminal accepts.

All verification is the TrustStore's. What this glue adds is the MQTT reality: bundle
topics are retained, so the same bytes come back after every (re)subscription. Bytes
already applied or already refused are not judged again, or every reconnect would count a
"rollback" refusal in the status. When a new trust bundle lands, a denylist or config that
was refused is asked for again (re-subscribe): it may have been refused only because the
key that signs it was not trusted yet.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from reader.bundles.store import KINDS
from reader.errors import BundleError
from reader.system.logs import fields
from reader.wire.topics import Topics

if TYPE_CHECKING:
    from reader.bundles.store import TrustStore

log = logging.getLogger(__name__)


class BundleIntake:
    def __init__(self, trust: TrustStore, bundle_dir: Path | None = None,
                 topics: Topics | None = None) -> None:
        self._trust = trust
        self._topics = topics
        self._client: mqtt.Client | None = None  # of the session now (sync thread only)
        self._followed: frozenset[str] = frozenset()  # neighbours whose denylist we follow
        # kind -> (digest of the last payload judged, whether it was applied)
        self._seen: dict[str, tuple[bytes, bool]] = {}
        if bundle_dir is not None:
            for kind in KINDS:
                held = Path(bundle_dir) / f"{kind}.cbor"
                if held.is_file():
                    self._seen[kind] = (hashlib.sha256(held.read_bytes()).digest(), True)

    def receive(self, kind: str, payload: bytes, muni: str | None = None) -> int | None:
        """Apply a bundle (`muni`: a neighbouring town's denylist); the new version, or
        None when refused or already judged."""
        if not payload:
            # An empty retained message is how a city clears a topic; nothing to apply.
            log.info("empty bundle message ignored", **fields(kind=kind))
            return None
        digest = hashlib.sha256(payload).digest()
        seen = kind if muni is None else f"{kind}-{muni}"
        if self._seen.get(seen, (b"", False))[0] == digest:
            log.debug("bundle already judged", **fields(kind=kind))
            return None
        self._seen[seen] = (digest, False)
        try:
            version = self._trust.apply(kind, payload, muni=muni)
        except BundleError:
            return None  # the TrustStore has logged why and counted it
        except Exception:
            del self._seen[seen]  # not judged: the next retained copy is tried again
            raise
        self._seen[seen] = (digest, True)
        if kind == "trust" and self._client is not None and self._topics is not None:
            retry = [k for k in KINDS if k != "trust" and not self._seen.get(k, (b"", True))[1]]
            for k in retry:
                del self._seen[k]
            if retry:
                self._client.subscribe([(self._topics.bundle(k), 1) for k in retry])
        return version

    # -- the MQTT side (CitySync's thread) ------------------------------------------------

    def connected(self, client: mqtt.Client) -> None:
        """A new session: nothing of the neighbours' is followed on it yet."""
        self._client, self._followed = client, frozenset()

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Apply what came on a bundle topic (ours, or an accepted town's denylist); False
        for a topic that is no bundle's."""
        assert self._topics is not None
        kind, town = self._topics.bundle_kind(topic), self._topics.denylist_town(topic)
        if kind is not None:
            self.receive(kind, payload)
        elif town is not None:
            self.receive("denylist", payload, muni=town)
        return kind is not None or town is not None

    def follow_neighbours(self, client: mqtt.Client) -> None:
        """Subscribe to the denylist of each town whose cards are accepted (and leave the
        others): the trust store's set changes with config bundles."""
        assert self._topics is not None
        wanted = self._trust.accepted
        if wanted == self._followed:
            return
        added, dropped = sorted(wanted - self._followed), sorted(self._followed - wanted)
        if added:
            client.subscribe([(self._topics.town_denylist(m), 1) for m in added])
        if dropped:
            client.unsubscribe([self._topics.town_denylist(m) for m in dropped])
        self._followed = wanted
        log.info("neighbouring towns' denylists followed", **fields(towns=sorted(wanted)))
