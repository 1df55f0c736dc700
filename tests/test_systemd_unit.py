"""The systemd unit is valid and hardened, and the sd_notify protocol reaches systemd.

sd_notify is tested against a real AF_UNIX datagram socket standing in for systemd's
notify socket (path and abstract namespace), as systemd itself would receive it.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from reader.system.sdnotify import Notifier, watchdog_interval

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "sukumo-reader.service"
INSTALLED_BINARY = "/opt/sukumo-reader/bin/sukumo-reader"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze missing (apt install systemd)")


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_is_notify_with_watchdog_and_restart() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].startswith(INSTALLED_BINARY + " ")
    assert service["User"] == "sukumo"
    assert set(service["SupplementaryGroups"].split()) >= {"audio", "plugdev"}
    assert service["StateDirectory"] == "sukumo-reader"
    assert service["ConfigurationDirectory"] == "sukumo-reader"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ProtectSystem"] == "strict"
    assert service["DevicePolicy"] == "closed"


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists and is executable; the real one only
    # exists after install.sh, so verify a copy whose ExecStart points at a stub script.
    stub = tmp_path / "sukumo-reader"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(stub)))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Warnings about our unit would be printed even with exit 0.
    assert UNIT.name not in result.stderr, result.stderr


@needs_analyze
def test_systemd_analyze_security_exposure_at_most_3() -> None:
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, cwd=UNIT.parent)
    out = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= 3.0, out


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_sends_the_sd_notify_messages(tmp_path: Path, abstract: bool) -> None:
    address = f"@sukumo-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    with _receiver(address) as systemd:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
        assert notifier is not None
        assert notifier.ready(status="reader ok")
        assert notifier.watchdog()
        assert notifier.status("queue 3 pending\nline two")
        assert notifier.stopping()
        received = [systemd.recv(4096).decode() for _ in range(4)]
        notifier.close()
    assert received == ["READY=1\nSTATUS=reader ok", "WATCHDOG=1",
                        "STATUS=queue 3 pending line two", "STOPPING=1"]


def test_no_notify_socket_means_no_notifier() -> None:
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "relative/path"}) is None


def test_vanished_socket_never_raises(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.watchdog() is False  # systemd went away: the tap loop goes on
    notifier.close()


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    ours = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(ours) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_an_unprovisioned_terminal_waits_and_a_broken_one_stops() -> None:
    """Installed but not provisioned: the unit's start condition is unmet (no start, no
    restart loop). Exit 2, an operator mistake, is never restarted; other failures are, but
    not forever."""
    unit = _unit()
    assert unit["Unit"]["ConditionPathExists"] == "/etc/sukumo-reader/provisioned"
    assert int(unit["Unit"]["StartLimitBurst"]) > 0
    assert int(unit["Unit"]["StartLimitIntervalSec"]) > 0  # 0 would mean "never give up"
    assert unit["Service"]["RestartPreventExitStatus"].split() == ["2"]


@needs_analyze
def test_the_start_condition_is_the_file_provision_writes(tmp_path: Path) -> None:
    from reader.technician.provision import PROVISIONED_FILE

    condition = _unit()["Unit"]["ConditionPathExists"]
    assert Path(condition).name == PROVISIONED_FILE
    local = f"ConditionPathExists={tmp_path / PROVISIONED_FILE}"
    assert subprocess.run([SYSTEMD_ANALYZE, "condition", local],
                          capture_output=True, timeout=60).returncode != 0
    (tmp_path / PROVISIONED_FILE).write_text("t-0001 392081\n")
    assert subprocess.run([SYSTEMD_ANALYZE, "condition", local],
                          capture_output=True, timeout=60).returncode == 0
