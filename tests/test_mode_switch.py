"""A config bundle switches the mode at run time (issue 6), end to end, without a restart.

A real mosquitto (DevBroker, TLS, the mqtt-v1 §6 ACL), the real daemon in a subprocess
with its CitySync, and the city publishing signed config bundles (ops key of the dev
issuer) retained on `sukumo/v1/<muni>/<tid>/config` with the city receiver's
certificate. The next taps are decided by the new mode; status.json shows the mode and
the config version. A bundle with an invalid setting is refused: the old mode stays, the
status keeps the old version and counts the refusal, and so does a restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mqtt_env
import pytest
from daemon_env import DaemonProc, Deployment, run_cli, wait_for
from mqtt_env import publish_config

from reader.devtools.broker import DevBroker

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(90)]
broker, dep, daemon = mqtt_env.broker, mqtt_env.dep, mqtt_env.daemon  # fixtures
TID = "t-switch-0001"
NURSERY = {"mode": "nursery", "facility": "sukumo-nursery-1", "min_gap_s": 300}


def status_where(dep: Deployment, ok: Any, what: str) -> dict[str, Any]:
    def matching() -> dict[str, Any] | None:
        try:
            status = dep.status()
        except (FileNotFoundError, ValueError):
            return None
        return status if ok(status) else None

    return wait_for(matching, 15, what)


def test_a_config_bundle_switches_the_mode_and_a_bad_one_is_refused(
        broker: DevBroker, dep: Deployment, daemon: DaemonProc) -> None:
    issuer = dep.issuer
    child = issuer.issue_card("N00000001", os.urandom(8), ap="nursery")
    member = issuer.issue_card("M00000001", os.urandom(8))
    status_where(dep, lambda s: s["sync"]["state"] == "online", "the terminal online")

    # Checkin (the file's mode): a child's card has no member application on it.
    daemon.feed(child)
    daemon.feed(member)
    daemon.wait_taps(2)
    before = dep.events()
    assert [(e["mode"], e["reason"]) for e in before] == [
        ("checkin", "not_registered"), ("checkin", None)]

    publish_config(broker, dep, NURSERY, version=1)
    status = status_where(dep, lambda s: s["mode"] == "nursery", "the nursery mode in status")
    assert status["versions"]["config"] == 1 and status["facility"] == "sukumo-nursery-1"
    assert status["pid"] == daemon.proc.pid  # the same process: no restart

    # The next taps are decided by the nursery mode, under the nursery AP profile.
    daemon.feed(child)
    daemon.feed(child)  # at once again: inside min_gap_s
    daemon.feed(member)  # a member card has no nursery application
    daemon.wait_taps(5)
    after = dep.events()[2:]
    assert [(e["mode"], e["facility"]) for e in after] == [("nursery", "sukumo-nursery-1")] * 3
    assert [(e["result"], e["reason"], e["detail"]) for e in after] == [
        ("accepted", None, {"direction": "arrival"}),
        ("rejected", "duplicate", {"direction": "arrival"}),  # docs/modes.md: of what
        ("rejected", "not_registered", {})]
    assert after[0]["card"]["mid"] == "N00000001"
    assert after[0]["card"]["ap"] == "nursery"

    # A signed bundle with an invalid setting: refused, the nursery mode stays.
    publish_config(broker, dep, {"mode": "checkin", "debounce_s": -5}, version=2)
    status = status_where(dep, lambda s: s["rejected_bundles"] == 1, "the refusal counted")
    assert status["mode"] == "nursery" and status["versions"]["config"] == 1
    assert any("debounce_s" in (e.get("why") or "") for e in daemon.log_entries()
               if e["level"] in ("warning", "error"))
    other = issuer.issue_card("N00000002", os.urandom(8), ap="nursery")
    daemon.feed(other)
    [*_, tap] = daemon.wait_taps(6)
    assert (tap["result"], tap["detail"]) == ("accepted", {"direction": "arrival"})
    assert dep.events()[-1]["mode"] == "nursery"

    # A restart keeps the last good bundle, not the refused one, nor the file's mode.
    assert daemon.terminate() == 0
    again = DaemonProc(dep).wait_ready()
    try:
        status = status_where(dep, lambda s: s["running"] and s["pid"] == again.proc.pid,
                              "the restarted terminal's status")
        assert status["mode"] == "nursery" and status["versions"]["config"] == 1
        again.feed(child)  # seconds after the arrival: the gap is kept in the database
        [tap] = again.wait_taps(1)
        assert (tap["reason"], tap["detail"]) == ("duplicate", {"direction": "arrival"})
        assert dep.events()[-1]["mode"] == "nursery"
    finally:
        again.kill()


def test_bundle_import_refuses_settings_the_terminal_cannot_run_with(tmp_path: Path) -> None:
    """Offline provisioning (`bundle import`) judges a config bundle as the daemon does."""
    dep = Deployment(tmp_path, tid=TID)
    good, bad = tmp_path / "good.cbor", tmp_path / "bad.cbor"
    good.write_bytes(dep.issuer.config_bundle(TID, NURSERY, version=1))
    bad.write_bytes(dep.issuer.config_bundle(TID, {"mode": "coupon"}, version=2))  # no kinds
    imported = run_cli("--config", str(dep.config), "bundle", "import", str(good))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    refused = run_cli("--config", str(dep.config), "bundle", "import", str(bad))
    assert refused.returncode == 1 and refused.stdout.startswith("refused (bad_settings)")
    assert "coupon" in refused.stdout
    assert (dep.state / "bundles" / "config.cbor").read_bytes() == good.read_bytes()
