"""Signed bundles down (mqtt-v1 §5): the vectors' bundles over a real broker, every `refuse`
vector refused on its topic while the terminal keeps the previous ones, the last good ones
kept across a restart with no network, and the same from a file with the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mqtt_env
import pytest
from mqtt_env import (
    VECTORS,
    city_config,
    close_client,
    raw_client,
    retained_status,
    terminal_settings,
    trust_for,
    wait_for,
)

from reader.cli import main as cli_main
from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.sync import CitySync
from reader.wire.topics import Topics

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixture
T1 = Topics("sukumo/v1", "392081", "t-0001")
HELD = {"trust": 3, "denylist": 41, "config": 7}


def _publish_bundle(broker: DevBroker, *args: str) -> None:
    config = city_config(broker, None, broker.workdir / "publisher.toml")
    subprocess.run([sys.executable, "-m", "city.cli", "--config", str(config),
                    "publish-bundle", *args], check=True, capture_output=True)


def _vector_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for kind in HELD:
        files[kind] = tmp_path / f"{kind}.hex"
        files[kind].write_text(VECTORS["bundles"][f"{kind}_bundle_hex"])
    return files


def test_bundles_over_mqtt_refusals_and_restart_without_network(
        broker: DevBroker, tmp_path: Path) -> None:
    settings = terminal_settings(broker, tmp_path / "t1")
    trust = trust_for(settings)
    sync = CitySync(settings, trust)
    sync.start()
    try:
        wait_for(lambda: sync.state == "online", 5, "online")
        files = _vector_files(tmp_path)
        _publish_bundle(broker, "--signed", str(files["trust"]))  # kind read from the payload
        _publish_bundle(broker, "--signed", str(files["denylist"]))
        _publish_bundle(broker, "--signed", str(files["config"]), "--tid", "t-0001")
        wait_for(lambda: trust.versions == HELD, 10, "vector bundles applied")
        assert trust.config_settings and trust.config_settings["debounce_s"] == 60

        city = raw_client(broker, RECEIVER_CN)
        refuse = VECTORS["bundles"]["refuse"]
        for n, vector in enumerate(refuse, start=1):
            city.publish(T1.bundle(vector["topic_kind"]), bytes.fromhex(vector["hex"]),
                         qos=1, retain=True).wait_for_publish(5)
            wait_for(lambda n=n: trust.refused == n, 5, f"{vector['name']} refused")
            assert trust.versions == HELD  # the previous bundles stay in force
        close_client(city)
        status = wait_for(lambda: (s := retained_status(broker, T1.status))
                          ["rejected_bundles"] == len(refuse) and s, 10, "status counts")
        assert {k: status["versions"][k] for k in HELD} == HELD

        # A reconnect brings the retained (refused) bundles again: not judged twice.
        broker.stop()
        wait_for(lambda: sync.state == "connecting", 5, "link loss noticed")
        broker.start()
        wait_for(lambda: sync.state == "online", 10, "back online")
        time.sleep(1.0)
        assert trust.refused == len(refuse) and trust.versions == HELD

        # A newer denylist, signed here from the ops key file, replaces the held one.
        key = tmp_path / "ops.scalar"
        key.write_text(VECTORS["ops"]["private_scalar_hex"])
        payload = tmp_path / "denylist.json"
        payload.write_text(json.dumps({"kind": "denylist", "version": 42,
                                       "serials": ["0102030405060708"], "members": ["M1"]}))
        _publish_bundle(broker, "--payload", str(payload), "--signing-key", str(key),
                        "--kid", VECTORS["ops"]["kid_hex"])
        wait_for(lambda: trust.versions["denylist"] == 42, 10, "denylist v42 applied")
    finally:
        sync.stop()

    # Restart with no network: the last good bundles come from disk.
    broker.stop()
    again = trust_for(settings)
    assert again.versions == {**HELD, "denylist": 42}
    assert again.is_denied(bytes.fromhex("0102030405060708"), "M0")
    offline = CitySync(settings, again)
    offline.start()
    try:
        time.sleep(1.0)
        assert offline.state == "connecting" and again.versions["trust"] == 3
    finally:
        offline.stop()


def test_cli_bundle_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "reader.toml"
    config.write_text(
        f'[terminal]\nid = "t-0001"\nmuni = "392081"\n'
        f'[verify]\nroot_public_key = "{VECTORS["root_public_hex"]}"\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    files = _vector_files(tmp_path)

    def bundle(*args: str) -> tuple[int, str]:
        code = cli_main(["--config", str(config), "bundle", "import", *args])
        return code, capsys.readouterr().out

    code, out = bundle(str(files["denylist"]))  # its signer is not trusted yet
    assert code == 1 and out.startswith("refused (untrusted_signer)")
    assert "import the trust bundle first" in out  # and what to do about it
    code, out = bundle(str(files["trust"]))
    assert code == 0 and out.startswith("applied trust bundle version 3")
    assert bundle(str(files["denylist"]))[0] == 0
    assert bundle(str(files["config"]), "--kind", "config")[0] == 0
    assert bundle(str(files["trust"]), "--kind", "denylist")[0] == 1  # wrong kind
    for vector in VECTORS["bundles"]["refuse"]:
        path = tmp_path / f"{vector['name']}.cbor"
        path.write_bytes(bytes.fromhex(vector["hex"]))
        code, out = bundle(str(path), "--kind", vector["topic_kind"])
        assert code == 1 and out.startswith("refused ("), vector["name"]
    settings_dir = tmp_path / "state" / "bundles"
    assert sorted(p.name for p in settings_dir.iterdir() if p.suffix == ".cbor") == [
        "config.cbor", "denylist.cbor", "trust.cbor"]
