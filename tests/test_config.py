"""Settings (issue 2): one TOML file, SUKUMO_READER_<SECTION>__<KEY> over it, validated once.

What a technician relies on: a mistake names the key, where it came from (the file or
the environment variable) and what is allowed; a typo is refused, never ignored; the
daemon refuses to start on it with exit code 2; the shipped reader.toml loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from daemon_env import REPO, run_cli
from pydantic import BaseModel

from reader.config import Settings, load_settings
from reader.config import settings as config
from reader.config.bundle import BUNDLE_KEYS
from reader.errors import ConfigError

READER_TOML = REPO / "firmware_config" / "reader.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in [n for n in os.environ if n.upper().startswith("SUKUMO_READER_")]:
        monkeypatch.delenv(name)
    yield monkeypatch


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reader.toml"
    path.write_text(text)
    return path


def refusal(path: Path | None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return str(exc.value)


@pytest.mark.parametrize(("text", "key", "allowed"), [
    ("[reader]\npoll_timeout_s = 9", "reader.poll_timeout_s = 9", "less than or equal to 5"),
    # A tap longer than the watchdog's half-life would get the daemon restarted mid-tap.
    ("[reader]\ntap_deadline_s = 30", "reader.tap_deadline_s = 30", "less than or equal to 20"),
    ("[reader]\ntransport = 'usb'", "reader.transport = 'usb'", "'virtual', 'pcsc' or 'nfcpy'"),
    ("[terminal]\nmode = 'parking'", "terminal.mode = 'parking'",
     "'checkin', 'event', 'nursery', 'coupon' or 'watch'"),
    ("[terminal]\nid = 'T 1'", "terminal.id = 'T 1'", "^[a-z0-9][a-z0-9-]{2,63}$"),
    ("[terminal]\nmuni = '3920'", "terminal.muni", "^[0-9]{6}$"),
    ("[terminal]\ntimezone = 'Mars/Olympus'", "terminal.timezone", "use an IANA name"),
    ("[verify]\nroot_public_key = '04abc'", "verify.root_public_key", "04[0-9A-Fa-f]{128}"),
    ("[sound]\nvolume = 1.5", "sound.volume = 1.5", "less than or equal to 1"),
    ("[sound]\nbackend = 'pulse'", "sound.backend", "'alsa' or 'simpleaudio'"),
    ("[log]\nlevel = 'LOUD'", "log.level", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("[mqtt]\nbatch_max_events = 501", "mqtt.batch_max_events", "less than or equal to 500"),
    # Issue 22: floors on intervals (these flooded the link) and min <= max across keys.
    ("[mqtt]\nack_timeout_s = 0.001", "mqtt.ack_timeout_s = 0.001",
     "greater than or equal to 1"),
    ("[mqtt]\nstatus_interval_s = 1e-9", "mqtt.status_interval_s = 1e-09",
     "greater than or equal to 1"),
    ("[mqtt]\nreconnect_min_s = 100\nreconnect_max_s = 1", "mqtt.reconnect_max_s = 1",
     "less than mqtt.reconnect_min_s = 100"),
    ("[queue]\nwarn_mb = 512\nbudget_mb = 256", "queue.budget_mb = 256",
     "less than queue.warn_mb = 512"),
    ("[feedback]\nlight_hold_s = 1e-6", "feedback.light_hold_s", "greater than or equal to 0.1"),
    ("[modes.coupon]\n[[modes.coupon.kinds]]\ncode = 'taxi'\nrule = 'shoe_size >= 3'\n"
     "limit = 1", "modes.coupon.kinds.0.rule", "known: senior"),
    ("[[modes.event.schedule]]\ncode = 'a'\nstart = 2026-08-01T10:00:00+09:00\n"
     "end = 2026-08-01T12:00:00+09:00\n[[modes.event.schedule]]\ncode = 'b'\n"
     "start = 2026-08-01T11:00:00+09:00\nend = 2026-08-01T13:00:00+09:00",
     "modes.event.schedule", "overlap"),
])
def test_a_bad_value_names_the_key_the_file_and_what_is_allowed(
        tmp_path: Path, text: str, key: str, allowed: str) -> None:
    path = toml(tmp_path, text)
    message = refusal(path)
    assert f"setting {key}" in message
    assert f"file {path}" in message
    assert allowed in message


def test_every_bad_key_is_listed_at_once(tmp_path: Path) -> None:
    message = refusal(toml(tmp_path, "[sound]\nvolume = 2\n[queue]\nwarn_mb = 0"))
    assert "sound.volume" in message and "queue.warn_mb" in message


def test_a_bad_environment_variable_is_named_instead_of_the_file(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = toml(tmp_path, "[reader]\npoll_timeout_s = 1")
    clean_env.setenv("SUKUMO_READER_READER__POLL_TIMEOUT_S", "9")
    message = refusal(path)
    assert "environment variable SUKUMO_READER_READER__POLL_TIMEOUT_S" in message
    assert "less than or equal to 5" in message and str(path) not in message


def test_the_environment_overrides_the_file_and_arguments_override_both(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = toml(tmp_path, "[log]\nlevel = 'INFO'\n[terminal]\nmode = 'event'\nfacility = 'hall'\n"
                          "[modes.nursery]\nmin_gap_s = 60")
    clean_env.setenv("SUKUMO_READER_LOG__LEVEL", "DEBUG")
    clean_env.setenv("SUKUMO_READER_TERMINAL__MODE", "nursery")
    clean_env.setenv("SUKUMO_READER_MODES__NURSERY__MIN_GAP_S", "120")  # nested table
    settings = load_settings(path)
    assert settings.log.level == "DEBUG"
    assert settings.terminal.mode == "nursery"
    assert settings.modes.nursery.min_gap_s == 120
    assert settings.terminal.facility == "hall"  # the file's, where no variable says else
    assert settings.sound.volume == 0.8  # the default, where neither says anything
    # Keyword arguments (tests, tools) win over the environment.
    assert load_settings(path, log={"level": "ERROR"}).log.level == "ERROR"


@pytest.mark.parametrize(("text", "key"), [
    ("[reader]\ntransprot = 'pcsc'", "reader.transprot"),
    ("[readers]\ntransport = 'pcsc'", "readers"),
    ("[modes.nursery]\nmin_gap = 60", "modes.nursery.min_gap"),
    ("[modes.coupon]\n[[modes.coupon.kinds]]\ncode = 'taxi'\nrule = 'senior'\nlimit = 1\n"
     "limt = 2", "modes.coupon.kinds.0.limt"),
    ("volume = 0.5", "volume"),  # a key outside any section
])
def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path, text: str, key: str) -> None:
    message = refusal(toml(tmp_path, text))
    assert f"setting {key}" in message and "this key does not exist" in message


@pytest.mark.parametrize(("name", "words"), [
    ("SUKUMO_READER_READER__TRANSPROT", "this key does not exist"),
    ("SUKUMO_READER_LOGG__LEVEL", "no setting section 'logg'"),
])
def test_an_unknown_environment_variable_is_refused(
        tmp_path: Path, clean_env: pytest.MonkeyPatch, name: str, words: str) -> None:
    clean_env.setenv(name, "1")
    message = refusal(toml(tmp_path, ""))
    assert name in message and words in message


def test_a_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert refusal(missing) == f"config file {missing} does not exist"


def test_no_file_at_the_default_path_means_the_defaults(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    # A laptop without /etc/sukumo-reader runs on the defaults (this machine may have one).
    clean_env.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "reader.toml")
    assert load_settings(None) == Settings()
    default = toml(tmp_path, "[terminal]\nmode = 'watch'")
    clean_env.setattr(config, "DEFAULT_CONFIG_PATH", default)
    assert load_settings(None).terminal.mode == "watch"  # and its file when there is one


def test_a_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    path = toml(tmp_path, "[reader\ntransport = 'pcsc'")
    message = refusal(path)
    assert message.startswith(f"config file {path} is not valid TOML") and "line 1" in message


def test_the_shipped_reader_toml_loads(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings(READER_TOML) == Settings()
    clean_env.setenv("SUKUMO_READER_TERMINAL__MODE", "watch")
    assert load_settings(READER_TOML).terminal.mode == "watch"


def test_the_daemon_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    bad = toml(tmp_path, "[reader]\npoll_timeout_s = 0\n[sound]\nenabled = false")
    done = run_cli("run", "--config", str(bad))  # the option after the command, as typed
    assert done.returncode == 2
    assert "setting reader.poll_timeout_s = 0" in done.stderr
    assert f"file {bad}" in done.stderr and "greater than or equal to 0.05" in done.stderr
    assert done.stdout == ""  # nothing started, nothing logged

    # Issue 22: this exited 70 with a traceback (the reconnect backoff refused it late).
    flood = toml(tmp_path, "[mqtt]\nreconnect_min_s = 100\nreconnect_max_s = 1\n")
    done = run_cli("run", "--config", str(flood))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "setting mqtt.reconnect_max_s = 1" in done.stderr

    done = run_cli("run", env={"SUKUMO_READER_LOG__LEVEL": "LOUD"})
    assert done.returncode == 2
    assert "environment variable SUKUMO_READER_LOG__LEVEL" in done.stderr

    missing = tmp_path / "absent.toml"
    done = run_cli("--config", str(missing), "run")
    assert done.returncode == 2 and f"config file {missing} does not exist" in done.stderr


def _section_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(table, key) of every leaf setting, walking nested tables and arrays of tables."""
    for name, info in model.model_fields.items():
        inner = [a for a in (info.annotation, *get_args(info.annotation))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        inner += [a for arg in get_args(info.annotation) for a in get_args(arg)
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        table = f"{prefix}.{name}" if prefix else name
        if inner:
            yield from _section_keys(inner[0], table)
        else:
            yield prefix, name


def test_docs_configuration_lists_every_key_and_every_bundle_key() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    keys = list(_section_keys(Settings))
    assert len(keys) > 50
    for table, key in keys:
        assert f"[{table.split('.schedule')[0].split('.kinds')[0]}]" in doc, table
        assert f"| `{key}` |" in doc, f"[{table}] {key} is not documented"
    for key in BUNDLE_KEYS:
        assert f"| `{key}` |" in doc, f"bundle key {key} is not documented"
