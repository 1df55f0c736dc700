"""A config bundle's `settings` (mqtt-v1 §5) -> new validated Settings, or ConfigError.

The city sends a flat map, e.g. {"mode": "checkin", "facility": "sukumo-sports-center",
"debounce_s": 60}. BUNDLE_KEYS is the whole list of what it may set and where each key
lands in reader.toml's layout; nothing else can be changed remotely: the terminal's
identity (id, muni), its trust root, its reader, its paths and its MQTT link stay what the
technician provisioned, so a bundle can change what a tap means but never who the
terminal is or whom it trusts.

The result is validated exactly like reader.toml at start-up (same models, same checks:
overlapping schedule, unknown coupon attribute, malformed rule, a coupon terminal with
no coupon kinds), so a terminal never takes settings its mode cannot run with. Any
failure raises ConfigError naming the bundle key; the caller keeps its current
settings. A key the terminal does not know is refused too (a typo must not pass
silently), so the whole bundle is refused, never half applied.

Apply each bundle to the settings loaded from the file (the base), not to those of the
previous bundle: a bundle is the city's whole say, like the deny list, so a key dropped
from a later bundle falls back to the file's value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from reader.config.settings import Settings, check_mode_can_run
from reader.errors import ConfigError

BUNDLE_KEYS: dict[str, tuple[str, ...]] = {
    "mode": ("terminal", "mode"),
    "facility": ("terminal", "facility"),
    "timezone": ("terminal", "timezone"),
    "debounce_s": ("modes", "checkin", "debounce_s"),
    "schedule": ("modes", "event", "schedule"),
    "min_gap_s": ("modes", "nursery", "min_gap_s"),
    "coupons": ("modes", "coupon", "kinds"),
    "coupon_offer": ("modes", "coupon", "offer"),
    "coupon_debounce_s": ("modes", "coupon", "debounce_s"),
    "volume": ("sound", "volume"),
    "sound_enabled": ("sound", "enabled"),
    "clock_skew_s": ("verify", "clock_skew_s"),
    "log_level": ("log", "level"),
}


def apply_bundle_settings(base: Settings, bundle: Mapping[str, Any]) -> Settings:
    """`base` with the bundle's settings applied, validated; ConfigError if any is bad."""
    data = base.model_dump()
    for key, value in bundle.items():
        path = BUNDLE_KEYS.get(key)
        if path is None:
            raise ConfigError(f"config bundle setting {key!r} is not one a bundle may set; "
                              f"allowed: {', '.join(BUNDLE_KEYS)}")
        section = data
        for part in path[:-1]:
            section = section[part]
        section[path[-1]] = copy.deepcopy(value)
    try:
        # model_validate, not Settings(...): the environment and the file were already
        # merged into `base`; reading them again would let them override the city.
        new = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, bundle)) from None
    try:
        check_mode_can_run(new)  # e.g. a coupon terminal without coupons: refused now
    except ConfigError as exc:
        raise ConfigError(f"config bundle refused: {exc}") from None
    return new


def _describe(exc: ValidationError, bundle: Mapping[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = next((k for k, path in BUNDLE_KEYS.items()
                    if k in bundle and loc[:len(path)] == path), None)
        where = ".".join(loc)
        given = err.get("input")
        shown = "" if isinstance(given, dict | list | tuple) else f" = {given!r}"
        lines.append(f"config bundle setting {key or where!r} ({where}){shown}: {err['msg']}")
    return "config bundle refused:\n  " + "\n  ".join(lines)
