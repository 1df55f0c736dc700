"""City events: the schedule decides which event a tap counts for, and is checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from modes_helpers import ModeTerminal, card, jst

from reader.config import load_settings
from reader.errors import ConfigError

SCHEDULE = [
    {"code": "EV-MORNING", "start": "2026-12-01T10:00:00+09:00",
     "end": "2026-12-01T12:00:00+09:00", "facility": "bunka-hall"},
    # Any facility (facility omitted), right after the first: end is exclusive.
    {"code": "EV-NOON", "start": "2026-12-01T12:00:00+09:00",
     "end": "2026-12-01T13:00:00+09:00"},
    # Another facility's event at the same time: not ours, and no overlap.
    {"code": "EV-ELSEWHERE", "start": "2026-12-01T14:00:00+09:00",
     "end": "2026-12-01T16:00:00+09:00", "facility": "sports-center"},
    {"code": "EV-ELSEWHERE-2", "start": "2026-12-01T10:30:00+09:00",
     "end": "2026-12-01T11:00:00+09:00", "facility": "sports-center"},
]
OUTSIDE = ("outside_schedule", "rejected", {})


@pytest.fixture
def events(tmp_path: Path):
    term = ModeTerminal(tmp_path, terminal={"mode": "event", "facility": "bunka-hall"},
                        modes={"event": {"schedule": SCHEDULE}})
    yield term
    term.close()


def accepted(code: str) -> tuple:
    return (None, "accepted", {"event_code": code})


def test_taps_count_for_the_event_whose_window_holds_them(events):
    alice, bob = card("SK-ALICE"), card("SK-BOB")
    seq = [
        (alice, "2026-12-01 09:59:59", OUTSIDE),
        (alice, "2026-12-01 10:00:00", accepted("EV-MORNING")),
        (alice, "2026-12-01 10:40:00", ("duplicate", "duplicate", {"event_code": "EV-MORNING"})),
        (bob, "2026-12-01 11:59:59", accepted("EV-MORNING")),
        (bob, "2026-12-01 12:00:00", accepted("EV-NOON")),  # a new event: counted again
        (alice, "2026-12-01 12:59:59", accepted("EV-NOON")),
        (alice, "2026-12-01 13:00:00", OUTSIDE),
        (bob, "2026-12-01 15:00:00", OUTSIDE),  # that window belongs to another facility
    ]
    for record, when, expected in seq:
        assert events.tap(record, jst(when)).verdict == expected, when
    assert [(r, reason) for r, reason, _ in events.recorded()] == [
        ("rejected", "outside_schedule"), ("accepted", None), ("rejected", "duplicate"),
        ("accepted", None), ("accepted", None), ("accepted", None),
        ("rejected", "outside_schedule"), ("rejected", "outside_schedule")]


def test_attendance_survives_a_restart(events):
    alice = card("SK-ALICE")
    assert events.tap(alice, jst("2026-12-01 10:05:00")).decision.reason is None
    events.restart()
    assert events.tap(alice, jst("2026-12-01 10:06:00")).decision.reason == "duplicate"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "reader.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_the_schedule_is_read_from_reader_toml(tmp_path):
    settings = load_settings(_write(tmp_path, """
[terminal]
mode = "event"
[[modes.event.schedule]]
code = "EV-1"
start = 2026-12-01T10:00:00+09:00
end = 2026-12-01T12:00:00+09:00
facility = "bunka-hall"
"""))
    (window,) = settings.modes.event.schedule
    assert window.code == "EV-1" and window.facility == "bunka-hall"


@pytest.mark.parametrize(("schedule", "words"), [
    ("""[[modes.event.schedule]]
code = "A"
start = 2026-12-01T10:00:00+09:00
end = 2026-12-01T12:00:00+09:00
[[modes.event.schedule]]
code = "B"
start = 2026-12-01T11:59:00+09:00
end = 2026-12-01T13:00:00+09:00
""", ["setting modes.event.schedule", "events 0 (A) and 1 (B) overlap"]),
    ("""[[modes.event.schedule]]
code = "A"
start = 2026-12-01T10:00:00
end = 2026-12-01T12:00:00+09:00
""", ["setting modes.event.schedule.0.start", "timezone"]),
    ("""[[modes.event.schedule]]
code = "A"
start = 2026-12-01T12:00:00+09:00
end = 2026-12-01T10:00:00+09:00
""", ["setting modes.event.schedule.0", "end", "is not after start"]),
    ("""[[modes.event.schedule]]
code = "A"
start = 2026-12-01T10:00:00+09:00
""", ["setting modes.event.schedule.0.end", "required"]),
], ids=["overlap", "no-offset", "end-before-start", "no-end"])
def test_a_bad_schedule_is_a_start_up_error_naming_the_key(tmp_path, schedule, words):
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, schedule))
    for word in words:
        assert word in str(err.value)
