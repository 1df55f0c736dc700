"""`sukumo-reader config show`: the effective settings, each with where it came from.

Sources, as `load_settings` applies them: environment (SUKUMO_READER_<SECTION>__<KEY>, or
a whole section as JSON in SUKUMO_READER_<SECTION>), the TOML file, or the default.
Secrets are redacted; the key file's path is shown, its contents never are.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from reader.cli import EXIT_OK
from reader.config import DEFAULT_CONFIG_PATH, ENV_DELIMITER, ENV_PREFIX, Settings, load_settings
from reader.system.i18n import _

REDACTED = "<redacted>"
_SECRET_WORDS = ("password", "secret", "token", "passphrase")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help=_("show the effective settings and where each came from"),
                       description=_("`config show`: every setting after defaults, the file "
                                   "and the environment are merged, with its source."))
    actions = p.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help=_("print the effective settings (secrets redacted)"))
    show.add_argument("--json", action="store_true",
                      help=_('print [{"key", "value", "source"}]'))
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.config if args.config is not None else (
        DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    rows = effective_settings(load_settings(path), path, dict(os.environ))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        width = max(len(r["key"]) for r in rows)
        print(_("# settings file: {path}").format(path=path or _("none (defaults)")))
        for r in rows:
            # The key and the value as the file spells them; only the source is words.
            line = (f"{r['key']:<{width}} = {json.dumps(r['value'], ensure_ascii=False)}"
                    f"   # {_said(r['source'])}")
            print(line)
    return EXIT_OK


def _said(source: str) -> str:
    """A row's source (English in --json, as _source words it) in the reader's language."""
    kind, _sep, name = source.partition(" ")
    if kind == "environment":
        return _("environment {name}").format(name=name)
    if kind == "file":
        return _("file {path}").format(path=name)
    return _("default")


def effective_settings(settings: Settings, path: Path | None,
                       environ: dict[str, str]) -> list[dict[str, Any]]:
    """One row per setting: {"key": "section.key", "value", "source"}, secrets redacted."""
    file_data: dict[str, Any] = {}
    if path is not None:
        with Path(path).open("rb") as fh:
            file_data = tomllib.load(fh)
    env = {k.upper(): v for k, v in environ.items()}
    rows = []
    for section, values in settings.model_dump(mode="json").items():
        # A section that is not a model (ap unset, modes) is one row of its own.
        is_model = isinstance(values, dict) and section != "modes"
        items = values.items() if is_model else [(None, values)]
        for key, value in items:
            name = section if key is None else f"{section}.{key}"
            rows.append({"key": name, "value": _redact(name, value),
                         "source": _source(section, key, file_data, env, path)})
    return rows


def _source(section: str, key: str | None, file_data: dict[str, Any], env: dict[str, str],
            path: Path | None) -> str:
    section_var = f"{ENV_PREFIX}{section}".upper()
    if key is not None and f"{section_var}{ENV_DELIMITER}{key}".upper() in env:
        return f"environment {section_var}{ENV_DELIMITER}{key.upper()}"
    if section_var in env:
        try:
            whole = json.loads(env[section_var])
        except ValueError:
            whole = {}
        if key is None or (isinstance(whole, dict) and key in whole):
            return f"environment {section_var}"
    in_file = file_data.get(section)
    if in_file is not None and (key is None or (isinstance(in_file, dict) and key in in_file)):
        return f"file {path}"
    return "default"


def _redact(name: str, value: Any) -> Any:
    if any(word in name.lower() for word in _SECRET_WORDS):
        return REDACTED if value else value
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password:  # mqtts://user:pass@host: keep the user, hide the password
            netloc = f"{parts.username}:{REDACTED}@{parts.hostname}"
            netloc += f":{parts.port}" if parts.port else ""
            return urlunsplit(parts._replace(netloc=netloc))
    if isinstance(value, dict):
        return {k: _redact(f"{name}.{k}", v) for k, v in value.items()}
    return value
