"""Bundles from files: offline provisioning (`sukumo-reader bundle import`) and city tools."""

from __future__ import annotations

from pathlib import Path

from reader.bundles.store import KINDS, TrustStore
from reader.card.cose import CoseError, decode_sign1
from reader.config import Settings
from reader.config.bundle import apply_bundle_settings
from reader.errors import BundleError, ConfigError
from reader.system import plain
from reader.system.i18n import _


def declared_kind(data: bytes) -> str | None:
    """The `kind` a bundle's payload claims, unverified (to pick a topic or a default);
    None when the bytes are not a COSE_Sign1 with a map payload naming a known kind."""
    try:
        kind = decode_sign1(data).payload_map().get("kind")
    except CoseError:
        return None
    return kind if kind in KINDS else None


def stored_version(path: Path) -> int:
    """The `version` a stored bundle file declares (0: none or unreadable). Unverified:
    for doctor's comparison with what the daemon reports in force."""
    try:
        version = decode_sign1(path.read_bytes()).payload_map().get("version")
    except (OSError, CoseError):
        return 0
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


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
    try:
        data = read_bundle_file(path)
    except OSError as exc:
        raise ConfigError(_("cannot read bundle file {path}: {problem}").format(
            path=path, problem=plain.os_words(exc))) from None
    kind = kind or declared_kind(data)
    if kind is None:
        raise BundleError("malformed", _(
            "{path} is not a signed bundle that names its kind (a damaged file, or not a "
            "bundle at all); check the file, or give --kind trust|denylist|config").format(
                path=path))
    # As the daemon does: settings it could not run with are refused, not saved over the
    # last good config bundle.
    trust = TrustStore.from_settings(
        settings, config_check=lambda bundle: apply_bundle_settings(settings, bundle))
    version = trust.apply(kind, data)
    unstored = trust.unstored.get(kind)
    if unstored is not None:
        # This process ends here: a bundle not on disk is a bundle the daemon never sees.
        raise BundleError("not_stored", _(
            "{kind} bundle version {version} verifies but was NOT stored, so it is not in "
            "force: {why}").format(kind=kind, version=version, why=unstored.said or unstored.why))
    return kind, version
