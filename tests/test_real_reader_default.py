"""Issue 12, failure 4: a terminal that reads no card must not pass every check.

`reader.toml` without a [reader] section means the real reader; `provision` writes the
reader it detects (or is told); doctor gives ✗ for the virtual reader unless a feed was
configured on purpose; `run` on the virtual reader warns at start (the real daemon).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from daemon_env import DaemonProc, Deployment

from reader.cli import main
from reader.config import load_settings
from reader.emulator.issuer import DevIssuer


def _provision(tmp_path: Path, *extra: str) -> Path:
    etc = tmp_path / "etc"
    root = DevIssuer.generate().root_public_hex
    assert main(["provision", "--config-dir", str(etc), "--state-dir", str(tmp_path / "var"),
                 "--no-chown", "--terminal-id", "t-real-0001", "--muni", "392081",
                 "--facility", "city-hall", "--mode", "checkin", "--broker", "",
                 "--root-key", root, *extra]) == 0
    return etc / "reader.toml"


def test_the_default_is_the_real_reader(tmp_path: Path) -> None:
    bare = tmp_path / "reader.toml"
    bare.write_text('[terminal]\nid = "t-real-0001"\n')
    assert load_settings(bare).reader.transport == "pcsc"


def test_provision_sets_the_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    detected = _provision(tmp_path / "a")  # no flag, no terminal to ask: detected
    written = tomllib.loads(detected.read_text())["reader"]["transport"]
    assert written in ("pcsc", "nfcpy")
    told = _provision(tmp_path / "b", "--transport", "nfcpy")
    assert tomllib.loads(told.read_text())["reader"]["transport"] == "nfcpy"
    assert "Card reader: transport = nfcpy" in capsys.readouterr().out


def test_doctor_fails_the_virtual_reader_without_a_feed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _provision(tmp_path, "--transport", "virtual", "--dev")
    capsys.readouterr()
    assert main(["--config", str(config), "doctor", "--user", "root", "--json"]) == 1
    reader = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["reader"]
    assert not reader["ok"]
    assert "reads no card" in reader["detail"]
    assert 'transport = "pcsc"' in reader["advice"]


def test_run_on_the_virtual_reader_warns(tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "terminal")
    daemon = DaemonProc(dep).wait_ready()
    try:
        warned = daemon.logged("virtual reader: this terminal reads no card, only files in "
                               "[reader] virtual_feed; set [reader] transport for a real "
                               "reader")
        assert warned and warned[0]["level"] == "warning"
    finally:
        assert daemon.terminate() == 0
