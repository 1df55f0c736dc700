"""Operator mistakes in the settings, explained: every message names the key (or the
file, or the environment variable) and what is allowed, and load_settings raises it as
ConfigError (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from reader.errors import ConfigError

ENV_PREFIX = "SUKUMO_READER_"
ENV_DELIMITER = "__"


def check_toml(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte "
                          f"0x{exc.object[exc.start]:02x} at offset {exc.start}): save it "
                          "as UTF-8") from None


def describe_env_error(exc: SettingsError) -> str:
    # pydantic-settings names the section, not the variable; find the value that is not JSON.
    for name, value in os.environ.items():
        if not name.upper().startswith(ENV_PREFIX) or value.strip()[:1] not in ("[", "{"):
            continue
        try:
            json.loads(value)
        except json.JSONDecodeError as err:
            key = ".".join(name[len(ENV_PREFIX):].lower().split(ENV_DELIMITER))
            return (f"invalid configuration:\n  environment variable {name} (setting {key}): "
                    f"not valid JSON ({err.msg} at character {err.pos}); a list or table "
                    "setting is given as JSON, e.g. "
                    f"{name}='[{{\"code\": \"taxi\", \"rule\": \"senior\", \"limit\": 4}}]'")
    return f"invalid configuration:\n  {exc}"


def describe_validation_error(exc: ValidationError, path: Path | None) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env_name = ENV_PREFIX + ENV_DELIMITER.join(str(p) for p in err["loc"]).upper()
        where = f"environment variable {env_name}" if env_name in os.environ else (
            f"file {path}" if path else "defaults"
        )
        allowed = _allowed(err)
        given = err.get("input")
        whole = isinstance(given, dict | list | tuple)  # a section or list: the key says it
        given_txt = "" if err["type"] == "missing" or whole else f" = {given!r}"
        lines.append(f"setting {key}{given_txt} ({where}): {err['msg']}{allowed}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _allowed(err: Any) -> str:
    # pydantic's own message already names patterns, choices and bounds.
    if err["type"] == "extra_forbidden":
        return "; this key does not exist (see docs/configuration.md)"
    return ""
