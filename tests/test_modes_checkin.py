"""Facility check-in and youth watch: what a citizen hears and what the city receives."""

from __future__ import annotations

from pathlib import Path

import pytest
from modes_helpers import ModeTerminal, card, jst

T0 = jst("2026-12-01 09:00:00")
S = 1000


@pytest.fixture
def checkin(tmp_path: Path):
    term = ModeTerminal(tmp_path, terminal={"mode": "checkin"})
    yield term
    term.close()


def test_a_second_tap_within_the_window_is_a_duplicate_with_its_own_sound(checkin):
    alice, bob = card("SK-ALICE"), card("SK-BOB")
    seq = [
        (alice, T0, (None, "accepted", {})),
        (alice, T0 + 30 * S, ("duplicate", "duplicate", {})),
        (bob, T0 + 31 * S, (None, "accepted", {})),  # another member is not affected
        (alice, T0 + 59_999, ("duplicate", "duplicate", {})),
        # The window opened at the accepted tap; the duplicates did not move it.
        (alice, T0 + 60 * S, (None, "accepted", {})),
        (alice, T0 + 61 * S, ("duplicate", "duplicate", {})),
    ]
    for record, at, expected in seq:
        assert checkin.tap(record, at).verdict == expected, at - T0
    assert checkin.recorded() == [
        ("accepted", None, {}), ("rejected", "duplicate", {}), ("accepted", None, {}),
        ("rejected", "duplicate", {}), ("accepted", None, {}), ("rejected", "duplicate", {})]


def test_the_window_survives_a_restart(checkin):
    alice = card("SK-ALICE")
    assert checkin.tap(alice, T0).decision.reason is None
    checkin.restart()
    assert checkin.tap(alice, T0 + 10 * S).decision.reason == "duplicate"
    checkin.restart()
    assert checkin.tap(alice, T0 + 60 * S).decision.reason is None


def test_a_clock_stepped_back_neither_defeats_debounce_nor_locks_a_member_out(checkin):
    alice = card("SK-ALICE")
    assert checkin.tap(alice, T0).decision.reason is None
    # 10 s later the clock is stepped back an hour: still a double tap (monotonic time),
    # and the event says its `at` is not to be trusted.
    back = checkin.tap(alice, T0 - 3590 * S, mono_ms=T0 + 10 * S)
    assert back.decision.reason == "duplicate" and not back.event.clock_synced
    # A minute after the accepted tap, by the monotonic clock: accepted again.
    assert checkin.tap(alice, T0 - 3540 * S, mono_ms=T0 + 60 * S).decision.reason is None
    assert checkin.tap(alice, T0 - 3530 * S, mono_ms=T0 + 70 * S).decision.reason == (
        "duplicate")


def test_debounce_is_a_setting(tmp_path):
    term = ModeTerminal(tmp_path, terminal={"mode": "checkin"},
                        modes={"checkin": {"debounce_s": 5}})
    alice = card("SK-ALICE")
    try:
        assert [term.tap(alice, T0 + dt * S).decision.reason for dt in (0, 4, 5, 6, 11)] == [
            None, "duplicate", None, "duplicate", None]
    finally:
        term.close()


def test_watch_records_every_tap_and_asks_for_it_to_be_sent_at_once(tmp_path):
    term = ModeTerminal(tmp_path, terminal={"mode": "watch"})
    child = card("SK-KID-0007", grade="中1")
    try:
        taps = [term.tap(child, T0 + dt * S) for dt in (0, 1, 2)]
    finally:
        term.close()
    assert all(t.decision.send_now for t in taps)
    assert [t.verdict for t in taps] == [(None, "accepted", {})] * 3
    assert [t.event.mode for t in taps] == ["watch"] * 3
