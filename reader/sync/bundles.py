"""Signed bundles arriving on their topics (mqtt-v1 §5) → `TrustStore.apply`.

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BundleError, ConfigError
from ..logs import fields
from ..trust import KINDS

if TYPE_CHECKING:
    from ..config import Settings
    from ..trust import TrustStore

log = logging.getLogger(__name__)


class BundleIntake:
    def __init__(self, trust: TrustStore, bundle_dir: Path | None = None,
                 resubscribe: Callable[[list[str]], None] | None = None) -> None:
        self._trust = trust
        self._resubscribe = resubscribe
        # kind -> (digest of the last payload judged, whether it was applied)
        self._seen: dict[str, tuple[bytes, bool]] = {}
        if bundle_dir is not None:
            for kind in KINDS:
                held = Path(bundle_dir) / f"{kind}.cbor"
                if held.is_file():
                    self._seen[kind] = (hashlib.sha256(held.read_bytes()).digest(), True)

    def receive(self, kind: str, payload: bytes) -> int | None:
        """Apply a bundle; the new version, or None when refused or already judged."""
        if not payload:
            # An empty retained message is how a city clears a topic; nothing to apply.
            log.info("empty bundle message ignored", **fields(kind=kind))
            return None
        digest = hashlib.sha256(payload).digest()
        if self._seen.get(kind, (b"", False))[0] == digest:
            log.debug("bundle already judged", **fields(kind=kind))
            return None
        self._seen[kind] = (digest, False)
        try:
            version = self._trust.apply(kind, payload)
        except BundleError:
            return None  # the TrustStore has logged why and counted it
        except Exception:
            del self._seen[kind]  # not judged: the next retained copy is tried again
            raise
        self._seen[kind] = (digest, True)
        if kind == "trust" and self._resubscribe is not None:
            retry = [k for k in KINDS if k != "trust" and not self._seen.get(k, (b"", True))[1]]
            for k in retry:
                del self._seen[k]
            if retry:
                self._resubscribe(retry)
        return version


def declared_kind(data: bytes) -> str | None:
    """The `kind` a bundle's payload claims, unverified (to pick a topic or a default);
    None when the bytes are not a COSE_Sign1 with a map payload naming a known kind."""
    from ..cose import CoseError, decode_sign1

    try:
        kind = decode_sign1(data).payload_map().get("kind")
    except CoseError:
        return None
    return kind if kind in KINDS else None


def read_bundle_file(path: Path) -> bytes:
    """A bundle file as bytes: raw COSE, or hex text (the vectors and many tools use hex)."""
    raw = path.read_bytes()
    try:
        return bytes.fromhex(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        return raw


def import_bundle_file(settings: Settings, path: Path, kind: str | None = None) -> tuple[str, int]:
    """Offline provisioning (§5): verify and apply a bundle from a file exactly as if it had
    arrived on its topic. `kind` defaults to what the payload declares. Returns (kind,
    version); BundleError when refused, ConfigError when the terminal is not provisioned."""
    from ..trust import TrustStore

    if not settings.verify.root_public_key:
        raise ConfigError("setting verify.root_public_key is empty: provision first")
    try:
        data = read_bundle_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read bundle file {path}: {exc.strerror}") from None
    kind = kind or declared_kind(data)
    if kind is None:
        raise BundleError("malformed", f"{path}: not a signed bundle naming its kind; "
                                       "give --kind trust|denylist|config")
    from ..runtime_config import apply_bundle_settings

    trust = TrustStore(bytes.fromhex(settings.verify.root_public_key), settings.terminal.muni,
                       settings.terminal.id, settings.paths.bundle_dir)
    # As the daemon does: settings it could not run with are refused, not saved over the
    # last good config bundle.
    trust.config_check = lambda bundle: apply_bundle_settings(settings, bundle)
    trust.load_persisted()
    return kind, trust.apply(kind, data)
