"""The disk fills up in the middle of a drain (a small tmpfs): taps keep coming, the full
disk refuses some (as it does for taps: said so, no seq used), and once space returns every
recorded tap reaches the city, in seq order with no gap, without a restart."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import mqtt_env
import pytest
from disk_env import fill_disk, mounted_tmpfs
from mqtt_env import (
    ReceiverProc,
    assert_stored_once,
    make_event,
    terminal_settings,
    trust_for,
    wait_for,
)

from reader.devtools.broker import DevBroker
from reader.errors import StorageFullError
from reader.queue import EventQueue
from reader.sync import CitySync

pytestmark = pytest.mark.mqtt
broker = mqtt_env.broker  # fixtures
receivers = mqtt_env.receivers


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path, 16) as mount_point:
        yield mount_point


def test_disk_full_mid_drain_loses_nothing_and_keeps_the_order(
        broker: DevBroker, receivers: list, small_tmpfs: Path, tmp_path: Path) -> None:
    settings = terminal_settings(broker, small_tmpfs / "state", batch_max_events=25)
    db = settings.paths.database
    db.parent.mkdir()
    city_db = tmp_path / "city.sqlite3"
    receivers.append(ReceiverProc(broker, city_db, tmp_path))
    queue = EventQueue.open(db)
    sync = CitySync(settings, trust_for(settings))
    recorded: list[str] = []
    refused = 0

    def tap(n: int) -> None:
        nonlocal refused
        try:
            recorded.append(queue.append(make_event(n), boot_id="t", mono_ns=n).id)
            sync.wake()
        except StorageFullError:
            refused += 1  # the tap path tells the user; nothing was recorded, no seq used

    try:
        for n in range(2000):
            tap(n)
        sync.start()
        wait_for(lambda: queue.summary().pending < 1900, 10, "the drain under way")
        ballast = fill_disk(small_tmpfs)
        for n in range(2000, 2300):  # taps go on while the disk is full
            tap(n)
            time.sleep(0.002)
        assert refused, "the disk never filled up"
        os.unlink(ballast)  # the technician frees space; nothing is restarted
        for n in range(2300, 2350):
            tap(n)
        assert_stored_once(city_db, recorded, db, timeout=60)  # seq 1..N, each once, acked
        assert queue.summary().last_seq == len(recorded)  # refused taps took no seq
    finally:
        sync.stop()
        queue.close()
