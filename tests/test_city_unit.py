"""The city's systemd template (systemd/sukumo-city@.service, shipped by the sukumo-city
package) is valid, hardened, and fit for N instances on one host: each its own MQTT client
id, no migration racing at start, a wrong setting not restarted in a loop."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "sukumo-city@.service"
INSTALLED_BINARY = "/opt/sukumo-city/bin/sukumo-city"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze missing (apt install systemd)")


def service(text: str) -> dict[str, list[str]]:
    """[Service] of a unit, each key with all its values (Environment= repeats)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_each_instance_is_its_own_client_and_nothing_races_at_start() -> None:
    s = service(UNIT.read_text())
    assert s["ExecStart"] == [f"{INSTALLED_BINARY} --config /etc/sukumo-city/city.toml run"]
    # The broker disconnects a client when another connects with its id: host + instance.
    assert "SUKUMO_CITY_MQTT__CLIENT_ID=city-%H-%i" in s["Environment"]
    assert s["EnvironmentFile"] == ["-/etc/sukumo-city/instance-%i.env"]
    # Migrations are a step of their own (docs/city.md), never each instance's start.
    assert "ExecStartPre" not in s and "ExecStartPost" not in s
    assert s["User"] == ["sukumo-city"]
    assert s["RestartPreventExitStatus"] == ["2"]  # a wrong setting: said once, not looped
    assert s["Restart"] == ["on-failure"]
    # Never given up: a city intake left stopped after a burst would leave every
    # terminal's batches unacked until someone notices.
    assert "StartLimitIntervalSec=0" in UNIT.read_text()


def test_install_section_allows_enabling_instances() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def stubbed(unit_text: str, tmp_path: Path) -> Path:
    """The template with ExecStart pointed at a stub script (verify wants the binary)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    stub = tmp_path / "sukumo-city"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(unit_text.replace(INSTALLED_BINARY, str(stub)))
    return unit


def verify(unit_text: str, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE
    template = stubbed(unit_text, tmp_path)
    instance = template.with_name("sukumo-city@1.service")  # an instance of the template
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(instance)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Warnings about our unit are printed even with exit 0.
    assert "sukumo-city@" not in result.stderr, result.stderr


def exposure(unit_text: str, tmp_path: Path) -> float:
    assert SYSTEMD_ANALYZE
    instance = stubbed(unit_text, tmp_path).with_name("sukumo-city@1.service")
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(instance)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    return float(match.group(1))


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    verify(UNIT.read_text(), tmp_path)


@needs_analyze
def test_systemd_analyze_verify_would_see_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("Type=exec", "Type=exce")
    with pytest.raises(AssertionError, match="Failed to parse service type"):
        verify(broken, tmp_path)


@needs_analyze
def test_systemd_analyze_security_exposure_at_most_2(tmp_path: Path) -> None:
    level = exposure(UNIT.read_text(), tmp_path)
    print(f"systemd-analyze security exposure of sukumo-city@1: {level}")
    assert level <= 2.0
