"""The journal keeps its history when one card taps again and again (issue 22 item 9).

A clone card on the reader wrote a 303-byte "tap recorded" line per tap: at 20 taps/s a
64 MB journal (journald@sukumo-reader's cap) lost its month of history in three hours.
Now the same card with the same verdict gets its first lines per window and then one
line that says how many taps it left out; every tap is still in the queue, and other
cards' lines are untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from daemon_env import DaemonProc, Deployment, wait_for

from reader.emulator.issuer import clone_of
from reader.system.logs import Repeats

pytestmark = pytest.mark.timeout(180)

CLONE_TAPS = 200
JOURNAL_BYTES = 64 * 2**20
TAPS_PER_S = 20


def test_a_clone_card_tapping_in_a_loop_leaves_the_journal_its_month(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    member = dep.issuer.issue_card("M00000001", os.urandom(8))
    clone = clone_of(member)
    others = [dep.issuer.issue_card(f"M1000000{n}", os.urandom(8)) for n in range(5)]
    daemon = DaemonProc(dep).wait_ready()
    try:
        for n in range(CLONE_TAPS):
            daemon.feed(clone)
            if n % 40 == 0:
                daemon.feed(others[n // 40])
        total = CLONE_TAPS + len(others)
        wait_for(lambda: len(dep.events()) >= total, 90, f"{total} taps in the queue")
    finally:
        assert daemon.terminate() == 0
    events = dep.events()
    assert len(events) == total  # every tap recorded, whatever the log says
    assert sum(e["reason"] == "clone_suspected" for e in events) == CLONE_TAPS

    mid = dep.pseudonym("M00000001")
    lines = [line for line in daemon.out_text().splitlines() if line.startswith("{")]
    about_clone = [line for line in lines if json.loads(line).get("mid") == mid]
    recorded = [json.loads(line) for line in about_clone
                if json.loads(line)["msg"] == "tap recorded"]
    left_out = [json.loads(line) for line in about_clone
                if json.loads(line)["msg"] == "tap lines left out"]
    burst = Repeats().burst
    assert len(recorded) == burst
    assert sum(entry["taps"] for entry in left_out) == CLONE_TAPS - burst  # honest count
    assert {e["reason"] for e in left_out} == {"clone_suspected"}
    # Other members' taps are each logged.
    assert sum(json.loads(line)["msg"] == "tap recorded" for line in lines) == (
        burst + len(others))

    # One window's worth of the clone's lines, at 20 taps/s for 30 days, fits the journal
    # (unlimited, the same taps would write 303 bytes each: 64 MB in under 3 hours).
    window_bytes = sum(len(line) + 1 for line in about_clone)
    windows = 30 * 86_400 / Repeats().window_s
    assert window_bytes * windows < JOURNAL_BYTES / 2, window_bytes
    per_tap_unlimited = sum(len(line) + 1 for line in about_clone[:burst]) / burst
    assert per_tap_unlimited * TAPS_PER_S * 30 * 86_400 > JOURNAL_BYTES  # what was at stake


def test_repeats_count_per_key_and_window() -> None:
    now = [0.0]
    limiter: Repeats[str] = Repeats(burst=2, window_s=10, clock=lambda: now[0])
    assert [limiter.admit("clone") for _ in range(5)] == [True, True, False, False, False]
    assert limiter.admit("someone else")
    assert limiter.due() == []  # the window is not over
    now[0] = 9.9
    assert not limiter.admit("clone")
    now[0] = 10.0
    assert not limiter.admit("clone")  # the window ended, its count not yet said
    assert limiter.due() == [("clone", 5)]
    assert limiter.admit("clone")  # a new window
    assert limiter.due(every=True) == []
