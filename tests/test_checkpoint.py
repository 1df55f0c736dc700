"""The WAL's checkpoint runs between taps, never inside a tap's commit (issue 22 item 11,
reader/queue/checkpoint.py).

SQLite checkpoints inside whichever commit takes the WAL past 1,000 pages: on main every
~170th tap waited, before its chime, for a thousand page writes and two more flushes. Here
the real tap loop (Terminal.run in a thread, the virtual reader, a real SQLite file) takes
300 taps while every tap's commit is watched: the database file itself (which only a
checkpoint writes, in WAL mode) never changes during one, and it does change between them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from daemon_env import Deployment
from waiting import wait_for

from reader.config import load_settings
from reader.queue.checkpoint import DUE, HELD_BACK
from reader.terminal.daemon import Terminal
from reader.transports.virtual import VirtualTransport

pytestmark = pytest.mark.timeout(180)
TAPS = 300  # about 6 pages a tap: past DUE (1,000) at least once


def _count_elsewhere(database: Path) -> int:
    """The events, counted by another process through its own read-only connection."""
    out = subprocess.run([sys.executable, "-c", (
        "import sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
        "print(c.execute('SELECT COUNT(*) FROM events').fetchone()[0])"), str(database)],
        capture_output=True, text=True, timeout=30, check=True)
    return int(out.stdout)


def _file_state(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def test_the_checkpoint_waits_for_the_tap_to_end(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    settings = load_settings(dep.config)
    transport = VirtualTransport(settings.reader)
    terminal = Terminal(settings, transport=transport, with_sync=False)
    database = settings.paths.database
    in_commit: list[int] = []  # taps whose commit changed the database file
    record = terminal.queue.record

    def watched(*args, **kwargs):  # the real record, with the file looked at around it
        before = _file_state(database)
        stored = record(*args, **kwargs)
        if _file_state(database) != before:
            in_commit.append(stored.seq or 0)
        return stored

    terminal.queue.record = watched  # type: ignore[method-assign]
    loop = threading.Thread(target=terminal.run, name="tap-loop")
    loop.start()
    counted: list[int] = []
    done = threading.Event()

    def technician() -> None:  # reads the queue again and again while the taps come
        while not done.is_set():
            counted.append(_count_elsewhere(database))

    looker = threading.Thread(target=technician, name="technician")
    looker.start()
    try:
        cards = [dep.issuer.issue_card(f"SK-CKPT-{n:02d}", os.urandom(8)) for n in range(8)]
        start = _file_state(database)
        for n in range(TAPS):
            transport.present(cards[n % len(cards)])
            wait_for(lambda n=n: terminal.state.last_event is not None
                     and terminal.state.last_event.seq == n + 1, 10, f"tap {n + 1}")
            transport.lift()
            wait_for(lambda: not terminal.source.card_on_reader, 5, "the card lifted")
        waiting = terminal.queue.checkpoints.frames_waiting
        wait_for(lambda: (waiting() or 0) < DUE, 5, "the checkpoint")
        wal_bytes = os.stat(f"{database}-wal").st_size
    finally:
        done.set()
        looker.join(30)
        terminal.stop()
        loop.join(10)
        terminal.close()
    assert in_commit == [], f"taps whose commit ran a checkpoint: {in_commit}"
    assert len(counted) > 10 and counted == sorted(counted) and counted[-1] <= TAPS
    assert terminal.queue.checkpoints.done >= 1  # between taps, by the loop
    assert _file_state(database)[0] > start[0]  # the taps reached the database file
    # The WAL never grew towards the safety net (HELD_BACK pages).
    assert wal_bytes < (DUE + 100) * (4096 + 24) < HELD_BACK * 4096
