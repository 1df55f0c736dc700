"""AP profiles: which card application a mode SELECTs and whether the card must sign.

Sources, first match wins: `[ap]` in reader.toml (one profile for every mode, e.g. a
neighbouring town's AID on a one-purpose terminal), then `[profiles.<mode>]` of the file
`[paths] ap_profiles` (firmware_config/ap-profiles.toml), then the spec's defaults
(card-ap-v1 §1: nursery reads the nursery AP, every other mode the member AP, both with
INTERNAL AUTHENTICATE). A profile with `authenticate = false` is allowed (security level
chosen per scene); its events carry `proof: null`. A mode missing from the file uses the
default. The `ap` the record must carry follows the mode unless the profile names it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..config import MEMBER_AID, NURSERY_AID, Settings
from ..errors import ConfigError
from ..session import NATIONAL_AID_PREFIX
from ..tap import Profile

_DEFAULT_AP = {"nursery": "nursery"}  # every other mode: "member"
_DEFAULT_AID = {"member": MEMBER_AID, "nursery": NURSERY_AID}
_FILE_KEYS = {"aid", "ap", "authenticate"}


def profile_for(settings: Settings) -> Profile:
    """The AP profile of `settings.terminal.mode`; ConfigError names the file and key."""
    mode = settings.terminal.mode
    default_ap = _DEFAULT_AP.get(mode, "member")
    if settings.ap is not None:
        ap = settings.ap.ap or default_ap
        return Profile(bytes.fromhex(settings.ap.aid), ap, settings.ap.authenticate)
    entry: dict[str, Any] = {}
    if settings.paths.ap_profiles is not None:
        entry = _read_profiles(settings.paths.ap_profiles).get(mode, {})
    where = f"{settings.paths.ap_profiles}: profiles.{mode}"
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise ConfigError(f"AP profile {where}: unknown key(s) {sorted(unknown)}; "
                          f"allowed: {sorted(_FILE_KEYS)}")
    ap = entry.get("ap", default_ap)
    if ap not in _DEFAULT_AID:
        raise ConfigError(f"AP profile {where}.ap = {ap!r}: must be member or nursery")
    aid = entry.get("aid", _DEFAULT_AID[ap])
    try:
        aid_bytes = bytes.fromhex(aid) if isinstance(aid, str) else b""
    except ValueError:
        aid_bytes = b""
    if not 5 <= len(aid_bytes) <= 16:
        raise ConfigError(f"AP profile {where}.aid = {aid!r}: must be 5-16 bytes of hex")
    if aid_bytes.startswith(NATIONAL_AID_PREFIX):
        raise ConfigError(f"AP profile {where}.aid = {aid!r}: a national (J-LIS) application "
                          "may never be selected")
    authenticate = entry.get("authenticate", True)
    if not isinstance(authenticate, bool):
        raise ConfigError(f"AP profile {where}.authenticate = {authenticate!r}: "
                          "must be true or false")
    return Profile(aid_bytes, ap, authenticate)


def _read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read AP profiles file {path} (paths.ap_profiles): "
                          f"{exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"AP profiles file {path} is not valid TOML: {exc}") from None
    profiles = data.get("profiles", {})
    bad = [k for k, v in profiles.items() if not isinstance(v, dict)] if isinstance(
        profiles, dict) else ["profiles"]
    extra = set(data) - {"profiles"}
    if bad or extra:
        raise ConfigError(f"AP profiles file {path}: expected only [profiles.<mode>] "
                          f"tables, found {sorted(set(bad) | extra)}")
    unknown_modes = set(profiles) - {"checkin", "event", "nursery", "coupon", "watch"}
    if unknown_modes:
        raise ConfigError(f"AP profiles file {path}: unknown mode(s) {sorted(unknown_modes)}")
    return profiles
