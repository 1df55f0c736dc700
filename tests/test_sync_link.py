"""What the city link's state looks like to the people who depend on it: with no city
receiver subscribed (MQTT 5 PUBACK 0x10, no matching subscribers) the running daemon says
so in status.json, `sukumo-reader status`, doctor and its MQTT status, and stops saying
it once a receiver takes the batches (which then drain, nothing lost)."""

from __future__ import annotations

import json
from pathlib import Path

import mqtt_env
import pytest
from daemon_env import DaemonProc, Deployment, end_process, run_cli
from mqtt_env import (
    ReceiverProc,
    append_events,
    assert_stored_once,
    mqtt_section,
    retained_status,
    wait_for,
)

from reader.config import load_settings
from reader.devtools.broker import DevBroker
from reader.technician import doctor
from reader.wire.topics import Topics

pytestmark = pytest.mark.mqtt


def sync_json(dep: Deployment) -> dict:
    """The "sync" part of the daemon's status.json (empty before its first write)."""
    try:
        return dep.status()["sync"]
    except (FileNotFoundError, ValueError):
        return {}
broker = mqtt_env.broker  # fixtures
receivers = mqtt_env.receivers


def test_no_city_receiver_shows_in_every_status_view_until_one_subscribes(
        broker: DevBroker, receivers: list, tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "term")
    dep.write_config(mqtt_section(broker, dep.tid, ack_timeout_s=2.0))
    ids = append_events(dep.database, 30)  # a backlog the city has not seen
    daemon = DaemonProc(dep).wait_ready()
    try:
        sync = wait_for(lambda: (s := sync_json(dep)).get("no_receiver") and s, 15,
                        "status.json saying no receiver")
        assert sync["state"] == "online" and sync["protocol"] == "5"
        assert sync["problems"] == ["no city receiver subscribed"]
        assert dep.status()["queue"]["pending"] == 30  # nothing dropped from the queue
        shown = run_cli("--config", str(dep.config), "status")
        assert "connected to the city, MQTT 5" in shown.stdout
        assert "WARNING   no city receiver is subscribed at the broker" in shown.stdout, \
            shown.stdout
        check = doctor.check_broker(load_settings(dep.config))
        assert not check.ok and "no city receiver subscribed" in check.detail, check
        assert "receiver" in check.advice
        topic = Topics("sukumo/v1", broker.muni, dep.tid).status
        # The status goes out every status_interval_s: the first one after the broker's
        # 0x10 carries it (an earlier retained one may predate it).
        mqtt_status = wait_for(lambda: (s := retained_status(broker, topic))["link"][
            "problems"] and s, 10, "the MQTT status saying no receiver")
        assert mqtt_status["link"] == {"mqtt": "5", "problems": ["no city receiver subscribed"]}
        assert mqtt_status["state"] == "online"

        city_db = tmp_path / "city.sqlite3"
        receivers.append(ReceiverProc(broker, city_db, tmp_path))
        assert_stored_once(city_db, ids, dep.database)
        sync = wait_for(lambda: (s := sync_json(dep)).get("problems") == [] and s, 15,
                        "status.json clear again")
        assert sync["no_receiver"] is False
        assert "WARNING" not in run_cli("--config", str(dep.config), "status").stdout
        assert doctor.check_broker(load_settings(dep.config)).ok
        wait_for(lambda: retained_status(broker, topic)["link"]["problems"] == [], 10,
                 "MQTT status clear again")
    finally:
        end_process(daemon.proc)
    assert json.loads((dep.state / "status.json").read_text())["running"] is False
