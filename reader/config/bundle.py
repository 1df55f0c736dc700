"""A config bundle's `settings` (mqtt-v1 §5) -> new validated Settings, or ConfigError.

The city sends a flat map, e.g. {"mode": "checkin", "facility": "sukumo-sports-center",
"debounce_s": 60}. BUNDLE_KEYS is the whole list of what it may set and where each key
lands in reader.toml's layout; nothing else can be changed remotely: the terminal's
identity (id, muni), its trust root, its reader, its paths and its MQTT link stay what the
technician provisioned, so a bundle can change what a tap means but never who the
terminal is or whom it trusts.

Strictly, too: a bundle is a program's output, not a technician's typing, so a value of
the wrong JSON type is refused, never coerced ("yes" is not true, "60" is not 60, true is
not 1), and text with control characters (a newline in a facility id) is refused.
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
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from reader.config.explain import problem
from reader.config.settings import Settings, check_mode_can_run
from reader.errors import ConfigError
from reader.system.i18n import _

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
    # 横展開: which neighbouring towns' residents this terminal accepts, and which of their
    # children a nursery has (docs/city-integration.md, "Neighbouring towns").
    "accept_munis": ("verify", "accept_munis"),
    "nursery_children": ("modes", "nursery", "neighbour_children"),
    "log_level": ("log", "level"),
}


def apply_bundle_settings(base: Settings, bundle: Mapping[str, Any]) -> Settings:
    """`base` with the bundle's settings applied, validated; ConfigError if any is bad."""
    data = base.model_dump(mode="json")
    for key, value in bundle.items():
        path = BUNDLE_KEYS.get(key)
        if path is None:
            raise ConfigError(_("config bundle setting {key} is not one a bundle may set; "
                                "allowed: {allowed}").format(
                key=repr(key), allowed=", ".join(BUNDLE_KEYS)))
        _check_text(key, value)
        section = data
        for part in path[:-1]:
            section = section[part]
        section[path[-1]] = copy.deepcopy(value)
        _check_strictly(key, path, section)
    try:
        # model_validate, not Settings(...): the environment and the file were already
        # merged into `base`; reading them again would let them override the city.
        new = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, bundle)) from None
    try:
        check_mode_can_run(new)  # e.g. a coupon terminal without coupons: refused now
    except ConfigError as exc:
        raise ConfigError(_("config bundle refused: {error}").format(error=exc)) from None
    return new


def _check_text(key: str, value: Any) -> None:
    """Every text in the value (nested too) free of control characters; JSON types only."""
    if isinstance(value, str):
        bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")),
                   None)
        if bad is not None:
            raise ConfigError(_("config bundle setting {key} = {value}: contains the "
                                "control character {char}; text settings are plain text"
                                ).format(key=repr(key), value=repr(value),
                                         char=f"U+{ord(bad):04X}"))
    elif isinstance(value, Mapping):
        for inner in value.values():
            _check_text(key, inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            _check_text(key, inner)
    elif not (value is None or isinstance(value, bool | int | float)):
        raise ConfigError(_("config bundle setting {key}: a {type} is not a setting value "
                            "(text, number, boolean, array or map)").format(
            key=repr(key), type=type(value).__name__))


def _check_strictly(key: str, path: tuple[str, ...], section: dict[str, Any]) -> None:
    # Settings as a whole (pydantic-settings) ignores strict=; its sections do not.
    model: Any = Settings
    for part in path[:-1]:
        model = model.model_fields[part].annotation
    try:
        model.model_validate_json(json.dumps(section, allow_nan=False), strict=True)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join((*path[:-1], *(str(p) for p in err["loc"])))
            given = err.get("input")
            shown = "" if isinstance(given, dict | list | tuple) else f" = {given!r}"
            lines.append(_line(key, where, shown, problem(err)))
        lines.append(_("(bundle settings are checked strictly: no conversion between text, "
                       "numbers and booleans)"))
        raise ConfigError(_refused(lines)) from None
    except ValueError:  # NaN or infinity (CBOR has them, JSON and settings not)
        raise ConfigError(_refused([_("config bundle setting {key}: NaN and infinity are "
                                      "not setting values").format(key=repr(key))])) from None


def _describe(exc: ValidationError, bundle: Mapping[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = next((k for k, path in BUNDLE_KEYS.items()
                    if k in bundle and loc[:len(path)] == path), None)
        where = ".".join(loc)
        given = err.get("input")
        shown = "" if isinstance(given, dict | list | tuple) else f" = {given!r}"
        lines.append(_line(key or where, where, shown, problem(err)))
    return _refused(lines)


def _line(key: str, where: str, shown: str, what: str) -> str:
    return _("config bundle setting {key} ({where}){given}: {problem}").format(
        key=repr(key), where=where, given=shown, problem=what)


def _refused(lines: list[str]) -> str:
    return _("config bundle refused:") + "\n  " + "\n  ".join(lines)
