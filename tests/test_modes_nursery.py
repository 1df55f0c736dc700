"""Nursery 登降園: arrival, departure, double taps, midnight in Asia/Tokyo, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from modes_helpers import ModeTerminal, card, jst

ARRIVAL = (None, "arrival", {"direction": "arrival"})
DEPARTURE = (None, "departure", {"direction": "departure"})


def dup(direction: str) -> tuple:
    return ("duplicate", "duplicate", {"direction": direction})


@pytest.fixture
def nursery(tmp_path: Path):
    term = ModeTerminal(tmp_path, terminal={"mode": "nursery"})
    yield term
    term.close()


KID = card("SK-KID-0042", ap="nursery", grade="年中")


def test_a_day_at_the_nursery(nursery):
    day = [
        ("2026-12-01 08:00:00", ARRIVAL),
        ("2026-12-01 08:03:00", dup("arrival")),  # tapped twice at the door
        ("2026-12-01 08:04:59", dup("arrival")),  # the gap runs from the arrival, not the dup
        ("2026-12-01 08:05:00", DEPARTURE),  # min_gap_s 300 reached: this is a departure
        ("2026-12-01 08:06:00", dup("departure")),  # the gap also guards a departure
        ("2026-12-01 12:30:00", ARRIVAL),  # came back: a new arrival
        ("2026-12-01 17:45:00", DEPARTURE),
    ]
    for when, expected in day:
        assert nursery.tap(KID, jst(when)).verdict == expected, when
    assert [(r, reason, d.get("direction")) for r, reason, d in nursery.recorded()] == [
        ("accepted", None, "arrival"), ("rejected", "duplicate", "arrival"),
        ("rejected", "duplicate", "arrival"), ("accepted", None, "departure"),
        ("rejected", "duplicate", "departure"), ("accepted", None, "arrival"),
        ("accepted", None, "departure")]


def test_each_child_is_counted_alone(nursery):
    other = card("SK-KID-0043", ap="nursery")
    assert nursery.tap(KID, jst("2026-12-01 08:00:00")).verdict == ARRIVAL
    assert nursery.tap(other, jst("2026-12-01 08:00:01")).verdict == ARRIVAL
    assert nursery.tap(KID, jst("2026-12-01 16:00:00")).verdict == DEPARTURE
    assert nursery.tap(other, jst("2026-12-01 16:00:01")).verdict == DEPARTURE


def test_a_child_who_never_tapped_out_arrives_the_next_day(nursery):
    assert nursery.tap(KID, jst("2026-12-01 08:00:00")).verdict == ARRIVAL
    # No departure on the 1st (a parent forgot). The 2nd starts with an arrival.
    assert nursery.tap(KID, jst("2026-12-02 08:00:00")).verdict == ARRIVAL
    assert nursery.tap(KID, jst("2026-12-02 17:00:00")).verdict == DEPARTURE


def test_the_day_ends_at_midnight_in_tokyo_not_utc(nursery):
    # 07:00 JST on the 2nd is 22:00 UTC on the 1st; 10:00 JST is 01:00 UTC on the 2nd.
    # One local day, two UTC days: the second tap is the departure.
    assert nursery.tap(KID, jst("2026-12-02 07:00:00")).verdict == ARRIVAL
    assert nursery.tap(KID, jst("2026-12-02 10:00:00")).verdict == DEPARTURE


def test_across_midnight(nursery):
    assert nursery.tap(KID, jst("2026-12-01 23:58:00")).verdict == ARRIVAL
    # A double tap straddling midnight is still a double tap...
    assert nursery.tap(KID, jst("2026-12-02 00:01:00")).verdict == dup("arrival")
    # ...but after the gap, a tap after midnight starts the new day with an arrival.
    assert nursery.tap(KID, jst("2026-12-02 00:03:30")).verdict == ARRIVAL
    assert nursery.tap(KID, jst("2026-12-02 00:09:00")).verdict == DEPARTURE


def test_direction_and_gap_survive_a_restart(nursery):
    assert nursery.tap(KID, jst("2026-12-01 08:00:00")).verdict == ARRIVAL
    nursery.restart()
    assert nursery.tap(KID, jst("2026-12-01 08:01:00")).verdict == dup("arrival")
    nursery.restart()
    assert nursery.tap(KID, jst("2026-12-01 17:00:00")).verdict == DEPARTURE
    nursery.restart()
    assert nursery.tap(KID, jst("2026-12-01 17:02:00")).verdict == dup("departure")
    assert len(nursery.recorded()) == 4


def test_gap_and_time_zone_are_settings(tmp_path):
    term = ModeTerminal(tmp_path, terminal={"mode": "nursery", "timezone": "UTC"},
                        modes={"nursery": {"min_gap_s": 60}})
    try:
        assert term.tap(KID, jst("2026-12-02 07:00:00")).verdict == ARRIVAL
        # In UTC, 07:00 and 10:00 JST on the 2nd are different days: a new arrival.
        assert term.tap(KID, jst("2026-12-02 10:00:00")).verdict == ARRIVAL
        assert term.tap(KID, jst("2026-12-02 10:01:00")).verdict == DEPARTURE
    finally:
        term.close()


def test_a_neighbouring_towns_child_passes_only_where_the_nursery_has_that_child(
        tmp_path: Path):
    """横展開: a child of town 392014 whose member id is the same as a Sukumo child's."""
    visitor = card("SK-KID-0042", ap="nursery", muni="392014")
    elsewhere = ModeTerminal(tmp_path / "a", terminal={"mode": "nursery"})
    enrolled = ModeTerminal(tmp_path / "b", terminal={"mode": "nursery"},
                            modes={"nursery": {"neighbour_children": ["392014:SK-KID-0042"]}})
    try:
        assert elsewhere.tap(visitor, jst("2026-12-01 08:00:00")).verdict == (
            "not_eligible", "rejected", {})
        assert enrolled.tap(visitor, jst("2026-12-01 08:00:00")).verdict == ARRIVAL
        # Sukumo's own SK-KID-0042 is another child: arrives, not "departs".
        assert enrolled.tap(KID, jst("2026-12-01 08:10:00")).verdict == ARRIVAL
        assert enrolled.tap(visitor, jst("2026-12-01 17:00:00")).verdict == DEPARTURE
    finally:
        elsewhere.close()
        enrolled.close()


def test_a_clock_that_jumps_neither_ends_the_day_nor_defeats_the_gap(nursery):
    """The wall clock set a day ahead at noon (not by NTP): the child who arrived in the
    morning still departs today, and a double tap after a step back is a double tap."""
    arrived = jst("2026-12-01 08:00:00")
    assert nursery.tap(KID, arrived).verdict == ARRIVAL
    noon = jst("2026-12-01 12:00:00")
    ahead = nursery.tap(KID, noon + 86_400_000, mono_ms=noon)
    assert ahead.verdict == DEPARTURE and not ahead.event.clock_synced
    # Back to the right time, then stepped back an hour 10 s after a new arrival.
    assert nursery.tap(KID, noon + 3_600_000).verdict == ARRIVAL
    back = nursery.tap(KID, noon, mono_ms=noon + 3_610_000)
    assert back.verdict == dup("arrival")
