"""Operator mistakes in the settings, explained: every message names the key (or the
file, or the environment variable) and what is allowed, and load_settings raises it as
ConfigError (exit 2), never a traceback.

pydantic words its complaints in English; `problem()` says each one in the reader's
language, chosen by pydantic's error type (the keys stay verbatim: they are what the
technician types).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from reader.errors import ConfigError
from reader.system.i18n import N_, _

ENV_PREFIX = "SUKUMO_READER_"
ENV_DELIMITER = "__"

# pydantic's complaint per error type, in pydantic's words (its message templates, minus
# the "(s)" of plurals), the placeholders its `ctx` fills in. A type not listed, or a
# language without a translation, keeps pydantic's own English `msg` byte for byte.
_PROBLEMS: dict[str, str] = {
    "missing": N_("Field required"),
    "extra_forbidden": N_("Extra inputs are not permitted"),
    "string_type": N_("Input should be a valid string"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "string_too_short": N_("String should have at least {min_length} characters"),
    "string_too_long": N_("String should have at most {max_length} characters"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional "
                         "part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "finite_number": N_("Input should be a finite number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "literal_error": N_("Input should be {expected}"),
    "enum": N_("Input should be {expected}"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    # Our own validators: their message is marked where it is raised, so `error` is
    # already in the reader's language.
    "value_error": N_("Value error, {error}"),
    "assertion_error": N_("Assertion failed, {error}"),
    "timezone_aware": N_("Input should have timezone info"),
    "datetime_type": N_("Input should be a valid datetime"),
    "datetime_parsing": N_("Input should be a valid datetime"),
    "datetime_from_date_parsing": N_("Input should be a valid datetime"),
    "path_type": N_("Input is not a valid path"),
    "model_type": N_("Input should be a table"),
    "model_attributes_type": N_("Input should be a table"),
    "dict_type": N_("Input should be a table"),
    "list_type": N_("Input should be a list"),
    "tuple_type": N_("Input should be a list"),
}


def problem(err: Any) -> str:
    """What is wrong with one value (a pydantic error), in the reader's language."""
    template = _PROBLEMS.get(err["type"])
    if template is None or _(template) == template:
        return str(err["msg"])
    # Bounds as pydantic prints them: le=1.0 is "1".
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v
           for k, v in (err.get("ctx") or {}).items()}
    if "expected" in ctx:  # "'a', 'b' or 'c'": the choices, without the English "or"
        ctx["expected"] = " / ".join(re.split(r",? or |, ", str(ctx["expected"])))
    try:
        return _(template).format(**ctx)
    except (KeyError, IndexError, ValueError):  # a ctx pydantic changed: its own words
        return str(err["msg"])


def check_toml(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(_("cannot read config file {path}: {reason}").format(
            path=path, reason=exc.strerror)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("config file {path} is not valid TOML: {error}").format(
            path=path, error=exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(_("config file {path} is not UTF-8 text (byte {byte} at offset "
                            "{offset}): save it as UTF-8").format(
            path=path, byte=f"0x{exc.object[exc.start]:02x}", offset=exc.start)) from None


def invalid(lines: list[str]) -> str:
    """The one heading of every refused configuration, one indented line per mistake."""
    return _("invalid configuration:") + "\n  " + "\n  ".join(lines)


def describe_env_error(exc: SettingsError, prefix: str = ENV_PREFIX) -> str:
    # pydantic-settings names the section, not the variable; find the value that is not JSON.
    for name, value in os.environ.items():
        if not name.upper().startswith(prefix) or value.strip()[:1] not in ("[", "{"):
            continue
        try:
            json.loads(value)
        except json.JSONDecodeError as err:
            key = ".".join(name[len(prefix):].lower().split(ENV_DELIMITER))
            example = f"{name}='[{{\"code\": \"taxi\", \"rule\": \"senior\", \"limit\": 4}}]'"
            return invalid([_(
                "environment variable {name} (setting {key}): not valid JSON ({error} at "
                "character {position}); a list or table setting is given as JSON, e.g. "
                "{example}").format(name=name, key=key, error=err.msg, position=err.pos,
                                    example=example)])
    return invalid([str(exc)])


def describe_validation_error(exc: ValidationError, path: Path | None,
                              prefix: str = ENV_PREFIX) -> str:
    """One line per mistake; `prefix` is the program's environment prefix (the city
    service's settings are explained the same way under SUKUMO_CITY_)."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env_name = prefix + ENV_DELIMITER.join(str(p) for p in err["loc"]).upper()
        where = _("environment variable {name}").format(name=env_name) \
            if env_name in os.environ else (
                _("file {path}").format(path=path) if path else _("defaults"))
        given = err.get("input")
        whole = isinstance(given, dict | list | tuple)  # a section or list: the key says it
        given_txt = "" if err["type"] == "missing" or whole else f" = {_shown(given)}"
        lines.append(_("setting {key}{given} ({where}): {problem}").format(
            key=key, given=given_txt, where=where, problem=problem(err) + _allowed(err)))
    return invalid(lines)


def _shown(value: Any) -> str:
    # A TOML date or time as the file spells it, not as Python's repr does.
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return repr(value)


def _allowed(err: Any) -> str:
    # pydantic's own message already names patterns, choices and bounds.
    if err["type"] == "extra_forbidden":
        return _("; this key does not exist (see docs/configuration.md)")
    return ""


def check_env_names(sections: set[str], prefix: str = ENV_PREFIX) -> None:
    # pydantic-settings reads only the variables it knows, so SUKUMO_READER_LOGG__LEVEL
    # would pass unnoticed; a mistyped section is refused here like one in the file.
    for name in os.environ:
        if not name.upper().startswith(prefix):
            continue
        section = name[len(prefix):].split(ENV_DELIMITER, 1)[0].lower()
        if section not in sections:
            raise ConfigError(invalid([_(
                "environment variable {name}: no setting section {section}; use {form} "
                "with a section of {sections} (see docs/configuration.md)").format(
                    name=name, section=repr(section),
                    form=f"{prefix}<SECTION>{ENV_DELIMITER}<KEY>",
                    sections=", ".join(sorted(sections)))]))
