"""Issue 12, failure 6: settings in a bundle are checked, not coerced.

Signed config bundles go to the real daemon through a real mosquitto (TLS, the §6 ACL):
"yes" for a boolean, "60" for a number, true for a number, and a facility id with a
newline are each refused (counted in the status, the held config version unchanged) and
a correct bundle after them applies. A root-signed trust bundle with version 2^64 is
refused (`bundle import`, exit 1) and does not block the next one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mqtt_env
import pytest
from daemon_env import DaemonProc, Deployment, run_cli, wait_for
from mqtt_env import publish_config

from reader.devtools.broker import DevBroker

broker, dep, daemon = mqtt_env.broker, mqtt_env.dep, mqtt_env.daemon  # fixtures
TID = "t-0001"


def _status(dep: Deployment) -> dict[str, Any] | None:
    try:
        return dep.status()
    except (OSError, ValueError):
        return None


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_config_bundles_are_not_coerced(broker: DevBroker, dep: Deployment,
                                        daemon: DaemonProc) -> None:
    wait_for(lambda: (_status(dep) or {}).get("sync", {}).get("state") == "online", 20,
             "online")
    refused_before = dep.status()["rejected_bundles"]
    bad = [{"sound_enabled": "yes"}, {"debounce_s": "60"}, {"volume": True},
           {"debounce_s": True}, {"facility": "hall\nEVIL forged log line"}]
    for n, settings in enumerate(bad, start=1):
        publish_config(broker, dep, settings, version=n)
        wait_for(lambda n=n: (_status(dep) or {}).get("rejected_bundles", 0)
                 >= refused_before + n, 20, f"bad bundle {n} refused")
    status = dep.status()
    assert status["versions"].get("config", 0) == 0
    assert status["facility"] == "test-hall"
    refusals = daemon.logged("bundle refused")
    assert any("strictly" in r.get("why", "") for r in refusals)
    assert any("U+000A" in r.get("why", "") for r in refusals)
    publish_config(broker, dep, {"debounce_s": 30, "volume": 1}, version=len(bad) + 1)
    wait_for(lambda: (_status(dep) or {}).get("versions", {}).get("config") == len(bad) + 1,
             20, "the correct bundle applied")


def test_a_trust_bundle_version_above_2_to_the_53_is_refused(tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "terminal")
    huge = tmp_path / "trust-huge.cbor"
    huge.write_bytes(dep.issuer.trust_bundle(version=2**64))
    result = run_cli("--config", str(dep.config), "bundle", "import", str(huge))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2^53" in result.stdout and "Traceback" not in result.stderr
    nxt = tmp_path / "trust-2.cbor"
    nxt.write_bytes(dep.issuer.trust_bundle(version=2))
    result = run_cli("--config", str(dep.config), "bundle", "import", str(nxt))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied trust bundle version 2" in result.stdout
