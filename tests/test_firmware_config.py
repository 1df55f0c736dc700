"""What goes onto the Pi (firmware_config/) is complete, valid and says what it must."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from reader.config import MEMBER_AID, NURSERY_AID, ApProfile, Mode, Settings, load_settings

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware_config"
READER_TOML = FIRMWARE / "reader.toml"
SETTING_LINE = re.compile(r"^#(?=\[|[a-z_]+ = )")  # "#key = value" or "#[section]"


def _sections(text: str) -> dict[str, list[str]]:
    """Lines of reader.toml per section, commented-out section headers included."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^#?\[([a-z_.]+)\]$", line)
        if header:
            current = header.group(1)
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return out


def _section_models() -> dict[str, type[BaseModel]]:
    models = {}
    for name, field in Settings.model_fields.items():
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                models[name] = candidate
    return models


def test_default_reader_toml_documents_every_setting() -> None:
    sections = _sections(READER_TOML.read_text())
    assert set(Settings.model_fields) <= set(sections), "a [section] is missing"
    for section, model in _section_models().items():
        for key in model.model_fields:
            pattern = re.compile(rf"^#?{key} = ")
            lines = sections[section]
            index = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
            assert index is not None, f"[{section}] {key} is not in {READER_TOML.name}"
            # Documented: a prose comment above it (or above its group of keys).
            above = [line for line in lines[:index] if line.startswith("# ")]
            assert above, f"[{section}] {key} has no comment"


def test_default_reader_toml_loads_as_the_defaults(tmp_path: Path, monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("SUKUMO_READER_")]:
        monkeypatch.delenv(name)
    assert load_settings(READER_TOML) == Settings()


def test_uncommented_defaults_are_the_real_defaults(tmp_path: Path, monkeypatch) -> None:
    """Removing every '#' in front of a setting gives a valid file whose values are the
    defaults, except where the default is 'unset' and the file shows an example."""
    for name in [n for n in os.environ if n.startswith("SUKUMO_READER_")]:
        monkeypatch.delenv(name)
    uncommented = tmp_path / "reader.toml"
    uncommented.write_text("\n".join(SETTING_LINE.sub("", line)
                                     for line in READER_TOML.read_text().splitlines()))
    loaded = load_settings(uncommented).model_dump()
    defaults = Settings().model_dump()
    for section, model in _section_models().items():
        for key in model.model_fields:
            default = (defaults[section] or {}).get(key, model.model_fields[key].default)
            if default is None:
                continue  # an example value for an unset key
            assert loaded[section][key] == default, f"[{section}] {key}: comment is stale"


def test_ap_profiles_file() -> None:
    data = tomllib.loads((FIRMWARE / "ap-profiles.toml").read_text())
    profiles = {mode: ApProfile(**p) for mode, p in data["profiles"].items()}
    assert set(profiles) == set(typing.get_args(Mode))
    for mode in ("checkin", "event", "coupon", "watch"):
        assert profiles[mode] == ApProfile(aid=MEMBER_AID, authenticate=True)
    assert profiles["nursery"] == ApProfile(aid=NURSERY_AID, authenticate=True)


def test_udev_rules_give_the_rcs380_to_plugdev() -> None:
    rules = [line for line in (FIRMWARE / "60-sukumo-reader.rules").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    for product in ("06c1", "06c3"):
        rule = next(r for r in rules if f'ATTRS{{idProduct}}=="{product}"' in r)
        assert 'ATTRS{idVendor}=="054c"' in rule
        assert 'GROUP="plugdev"' in rule and 'MODE="0660"' in rule
        for part in rule.split(", "):  # every clause is KEY op "value"
            assert re.fullmatch(r'[A-Z]+(\{[A-Za-z_]+\})?(==|=|\+=)"[^"]*"', part), part
    blacklist = (FIRMWARE / "sukumo-reader-blacklist.conf").read_text().splitlines()
    assert "blacklist port100" in blacklist


def test_polkit_rule_allows_only_the_service_user_into_pcscd() -> None:
    text = (FIRMWARE / "50-sukumo-pcscd.rules").read_text()
    assert 'subject.user == "sukumo"' in text
    assert "org.debian.pcsc-lite.access_pcsc" in text
    assert "org.debian.pcsc-lite.access_card" in text
    assert text.count("{") == text.count("}") and text.count("(") == text.count(")")


def test_journald_caps() -> None:
    parser = configparser.ConfigParser()
    parser.read(FIRMWARE / "journald-sukumo-reader.conf")
    journal = parser["Journal"]
    assert journal["SystemMaxUse"].endswith("M") and int(journal["SystemMaxUse"][:-1]) <= 128
    assert "RuntimeMaxUse" in journal and "SyncIntervalSec" in journal


def test_boot_fragment_turns_audio_on_between_markers() -> None:
    lines = (FIRMWARE / "config.txt").read_text().splitlines()
    begin, end = lines.index("# sukumo-reader begin"), lines.index("# sukumo-reader end")
    body = [line for line in lines[begin:end] if line and not line.startswith("#")]
    assert "dtparam=audio=on" in body
    assert all("=" in line or line.startswith("[") for line in body)


@pytest.mark.skipif(shutil.which("aplay") is None, reason="alsa-utils not installed")
def test_asound_conf_parses_with_alsa() -> None:
    # Real alsa-lib parsing of our file on top of the system's alsa.conf.
    config_path = f"/usr/share/alsa/alsa.conf:{FIRMWARE / 'asound.conf'}"
    env = {**os.environ, "ALSA_CONFIG_PATH": config_path}
    result = subprocess.run(["aplay", "-L"], capture_output=True, text=True, env=env, timeout=20)
    assert "sukumo_dmix" in result.stdout, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
