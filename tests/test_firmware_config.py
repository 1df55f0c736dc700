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
SETTING_LINE = re.compile(r"^#(?=\[|[a-z_]+ = )")  # "#key = value", "#[table]", "#[[array]]"


def _tables(text: str) -> dict[str, list[str]]:
    """Lines of reader.toml per table (dotted name), commented-out headers included."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^#?\[\[?([a-z_.]+)\]\]?$", line)
        if header:
            current = header.group(1)
            out.setdefault(current, [])
        else:
            out[current].append(line)
    return out


def _model_of(annotation: object) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        for inner in typing.get_args(candidate):  # tuple[Model, ...]: an array of tables
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _keys(model: type[BaseModel], table: str = "") -> list[tuple[str, str, object]]:
    """(table, key, default) for every leaf setting, sub-tables walked."""
    out = []
    for key, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        path = f"{table}.{key}" if table else key
        if sub is not None:
            out.append((table, key, "table"))
            out += _keys(sub, path)
        else:
            out.append((table, key, field.get_default(call_default_factory=True)))
    return out


def test_default_reader_toml_documents_every_setting() -> None:
    tables = _tables(READER_TOML.read_text())
    for table, key, default in _keys(Settings):
        path = f"{table}.{key}" if table else key
        if default == "table":
            assert path in tables or any(t.startswith(path + ".") for t in tables), path
            continue
        lines = tables[table]
        index = next((i for i, line in enumerate(lines) if re.match(rf"^#?{key} = ", line)), None)
        assert index is not None, f"[{table}] {key} is not in {READER_TOML.name}"
        # Documented: a prose comment above it (or above its group of keys).
        assert any(line.startswith("# ") for line in lines[:index]), f"[{table}] {key}"


def _without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SUKUMO_READER_")]:
        monkeypatch.delenv(name)


def test_default_reader_toml_loads_as_the_defaults(monkeypatch) -> None:
    _without_env(monkeypatch)
    assert load_settings(READER_TOML) == Settings()


def test_uncommented_defaults_are_the_real_defaults(tmp_path: Path, monkeypatch) -> None:
    """Removing every '#' in front of a setting gives a valid file whose values are the
    defaults, except where the default is 'unset' or empty and the file shows an example."""
    _without_env(monkeypatch)
    uncommented = tmp_path / "reader.toml"
    uncommented.write_text("\n".join(SETTING_LINE.sub("", line)
                                     for line in READER_TOML.read_text().splitlines()))
    loaded = load_settings(uncommented).model_dump()
    for table, key, default in _keys(Settings):
        if default in (None, (), "table") or table.endswith((".schedule", ".kinds")):
            continue  # an example for an unset key, or a field of an example table
        value = loaded
        for part in [*table.split("."), key] if table else [key]:
            value = value[part]
        assert value == default, f"[{table}] {key}: the commented default is stale"


def test_ap_profiles_file() -> None:
    data = tomllib.loads((FIRMWARE / "ap-profiles.toml").read_text())
    profiles = {mode: ApProfile(**p) for mode, p in data["profiles"].items()}
    assert set(profiles) == set(Mode)
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


def test_polkit_rule_allows_only_the_service_user_and_its_group_into_pcscd() -> None:
    text = (FIRMWARE / "50-sukumo-pcscd.rules").read_text()
    # The technicians of group sukumo run `readers` and `tap` without sudo.
    assert '(subject.user == "sukumo" || subject.isInGroup("sukumo"))' in text
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
