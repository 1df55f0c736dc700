"""A failing SD card, through the real daemon, a real broker and a real city receiver
(issue 22, item 4): the tap the citizen was told failed never reaches the city as
accepted, and status counts it.

The daemon runs under an LD_PRELOAD shim (scripts/io_shim.py, built with cc) that makes
every fsync/fdatasync of the queue's -wal file fail with EIO while a trigger file
exists: SQLite has written the commit's frames, the sync fails, the tap gets the error
sound. The daemon is then stopped (SIGTERM) or killed (SIGKILL) with the storage still
failing, and started again on a working one, as after a technician's visit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import mqtt_env
import pytest
from daemon_env import DaemonProc, Deployment, wait_for
from disk_env import io_shim
from mqtt_env import ReceiverProc, mqtt_section

from reader.devtools.broker import DevBroker

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]
broker = mqtt_env.broker  # fixture
TID = "t-eio-0001"


def mids(events: dict[str, dict]) -> set[str]:
    return {e["card"]["mid"] for e in events.values() if e["card"]}


def city_events(db: Path) -> dict[str, dict]:
    """{event id: the §2 event} the city stored for this terminal (sukumo-city's events)."""
    rows = mqtt_env.receiver_query(db, f"SELECT id::text, body FROM city.events "
                                       f"WHERE tid = '{TID}'")
    return {i: body for i, body in rows}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_tap_whose_fsync_failed_never_reaches_the_city_as_accepted(
        broker: DevBroker, tmp_path: Path, stop: signal.Signals) -> None:
    dep = Deployment(tmp_path / "terminal", tid=TID)
    dep.write_config(mqtt_section(broker, TID, ack_timeout_s=2.0))
    city_db, failing = tmp_path / "city.sqlite3", tmp_path / "sd-card-failing"
    shim = io_shim(tmp_path / "shim")
    env = {"LD_PRELOAD": str(shim), "SUKUMO_SHIM_EIO_WHEN": str(failing)}
    first, second, third = (dep.issuer.issue_card(f"SK-EIO-{n}", os.urandom(8))
                            for n in range(3))
    daemon = DaemonProc(dep, env=env).wait_ready()  # the city away: taps wait in the queue
    try:
        daemon.feed(first)
        [recorded] = daemon.wait_taps(1)

        failing.touch()  # the card starts failing its flushes
        daemon.feed(second)
        wait_for(lambda: [e for e in daemon.log_entries()
                          if e.get("msg", "").startswith(("tap not recorded", "tap failed"))],
                 15, "the failed tap")
        assert not daemon.logged("tap recorded")[1:]  # the citizen heard the error
        with contextlib.suppress(AssertionError):  # written every 2 s
            wait_for(lambda: dep.status()["unrecorded"], 6, "unrecorded in status")
        unrecorded = dep.status()["unrecorded"]
        daemon.proc.send_signal(stop)
        daemon.proc.wait(15)
    finally:
        daemon.kill()
    assert "SK-EIO-1" not in mids(city_events(city_db))  # not while the card failed

    failing.unlink()  # a working card again
    receiver = ReceiverProc(broker, city_db, tmp_path)
    try:
        daemon = DaemonProc(dep, env=env).wait_ready()
        try:
            daemon.feed(third)
            [after] = daemon.wait_taps(1)
            wait_for(lambda: after["id"] in city_events(city_db), 30, "the next tap stored")
            wait_for(lambda: len(city_events(city_db)) == 3, 30, "the voided event")
            city = city_events(city_db)
            [voided] = [e for e in city.values() if e["card"]["mid"] == "SK-EIO-1"]
            assert (voided["result"], voided["reason"]) == ("rejected", "voided")
            # seq stays gap-free: the city sees that a tap happened and counts nothing
            assert sorted(e["seq"] for e in city.values()) == [1, 2, 3]
            assert voided["seq"] == 2 and after["seq"] == 3
            assert city[recorded["id"]]["result"] == "accepted"
            assert any("voided" in a for a in dep.status()["alarms"])
        finally:
            daemon.kill()
    finally:
        receiver.stop()
    assert unrecorded == 1  # status counted the failed tap
