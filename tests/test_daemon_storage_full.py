"""A full queue at the daemon level, heard through real ALSA (issue 4, "Disk full").

The real `sukumo-reader run` process, its sound going through ALSA's `file` plugin
(tests/alsa_capture.py explains the config) into a capture file. The queue is filled to
its budget before the daemon starts; then a citizen taps:
- the tap gets the error sound and a clear log line, the daemon keeps running, nothing
  recorded before is lost;
- once the city acknowledges events (space returns), the next tap is recorded with
  the chime, without a restart.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from alsa_capture import file_config
from daemon_env import DaemonProc, Deployment, wait_for

from reader.errors import StorageFullError
from reader.queue import EventQueue
from reader.sound import load_clips
from reader.wire.event import Event, Mode, Reason

BUDGET_MB = 1


def fill_queue(path: Path) -> int:
    """Append dummy events until the budget refuses one; return how many went in."""
    queue = EventQueue.open(path, warn_mb=1, budget_mb=BUDGET_MB)
    count = 0
    try:
        for pad in (2000, 200, 0):  # big events first, then smaller ones into the last gaps
            while True:
                event = Event(id=str(uuid.uuid4()), at_ms=int(time.time() * 1000),
                              clock_synced=True, mode=Mode.CHECKIN, facility="x",
                              reason=Reason.CARD_ERROR, detail={"pad": "x" * pad})
                try:
                    queue.append(event, boot_id="b", mono_ns=0)
                except StorageFullError:
                    break
                count += 1
        return count
    finally:
        queue.close()


def settled_size(path: Path, quiet_s: float = 0.5, timeout: float = 10.0) -> int:
    """The capture's size once nothing has been written to it for `quiet_s`."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return size
        time.sleep(0.05)
    raise AssertionError("sound capture never settled")


def test_full_queue_gets_the_error_sound_and_recovers(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    filled = fill_queue(dep.database)
    assert filled > 100
    dep.write_config(f"[queue]\nwarn_mb = 1\nbudget_mb = {BUDGET_MB}\n")
    dep.config.write_text(dep.config.read_text().replace("enabled = false",
                                                         "enabled = true\nvolume = 1.0"))
    capture = tmp_path / "capture.raw"
    alsa = file_config(tmp_path / "asound.conf", capture)
    clips = load_clips(None, 1.0)
    daemon = DaemonProc(dep, env={"ALSA_CONFIG_PATH": str(alsa)}).wait_ready()
    try:
        member = dep.issuer.issue_card("SK-FULL-1", os.urandom(8))
        daemon.feed(member)
        wait_for(lambda: daemon.logged("tap not recorded: storage full"), 15, "storage full")
        after_error = settled_size(capture)
        assert capture.read_bytes().endswith(clips["error"].pcm)
        assert daemon.proc.poll() is None, "the daemon must keep running"
        assert len(dep.events()) == filled, "nothing recorded before may be lost"

        # The city acknowledges the oldest half: the space comes back.
        with EventQueue.open(dep.database, budget_mb=BUDGET_MB) as queue:
            ids = [e["id"] for e in queue.iter_events(limit=filled // 2)]
            assert queue.ack(ids) == len(ids)
        daemon.feed(member)
        taps = daemon.wait_taps(1)
        assert taps[0]["result"] == "accepted" and taps[0]["sound"] == "accepted"
        settled_size(capture)
        assert capture.read_bytes()[after_error:] == clips["accepted"].pcm
        seqs = [e["seq"] for e in dep.events()]
        assert seqs[-1] == filled + 1, "no seq was used by the refused tap"
    finally:
        daemon.kill()
