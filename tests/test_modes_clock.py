"""The modes' clock (reader/modes/clock.py), reading by reading: which wall clock steps
the modes follow, which they do not, and when the city is told."""

from __future__ import annotations

from reader.modes.clock import TOLERANCE_MS, Anchor, ModeTime, Reading, advance, needs_floor

T0 = 1_796_000_000_000  # 2026-12-01, Unix ms
DAY = 86_400_000
S = 1000


class Terminal:
    """Readings through one stored anchor, as the queue keeps it; every reading is an
    accepted tap, so the mode state's newest time is the floor after a reboot."""

    def __init__(self) -> None:
        self.anchor: Anchor | None = None
        self.newest: int | None = None

    def read(self, wall_ms: int, mono_ms: int, *, boot: str = "b1",
             synced: bool = True) -> ModeTime:
        now = Reading(wall_ms, boot, mono_ms * 1_000_000, synced)
        time_ = advance(self.anchor, now, self.newest if needs_floor(self.anchor, now) else None)
        if time_.store:
            self.anchor = time_.anchor
        self.newest = max(self.newest or 0, time_.at_ms)
        return time_


def test_a_wall_clock_that_agrees_is_followed() -> None:
    t = Terminal()
    first = t.read(T0, 0)
    assert first.at_ms == T0 and first.store
    steady = t.read(T0 + 10 * S, 10 * S)
    assert steady.at_ms == T0 + 10 * S and not steady.store  # nothing to write per tap
    # A small step forward is followed; a step back never is: the modes' time goes on.
    assert t.read(T0 + 25 * S, 20 * S).at_ms == T0 + 25 * S
    small_back = t.read(T0 + 5 * S, 30 * S)
    assert small_back.at_ms == T0 + 35 * S and not small_back.doubted
    assert not small_back.new_jump and not small_back.store


def test_a_jump_forward_is_not_followed_and_raises_one_alarm() -> None:
    t = Terminal()
    t.read(T0, 0)
    ahead = t.read(T0 + 400 * DAY, 10 * S)
    assert ahead.at_ms == T0 + 10 * S and ahead.doubted and ahead.new_jump
    later = t.read(T0 + 400 * DAY + 20 * S, 30 * S)  # still off: no second alarm
    assert later.at_ms == T0 + 30 * S and later.doubted and not later.new_jump
    back = t.read(T0 + 40 * S, 40 * S)  # the wall clock agrees again: followed
    assert back.at_ms == T0 + 40 * S and not back.doubted and not back.new_jump
    again = t.read(T0 - 31 * DAY, 50 * S)  # a new jump, the other way: a new alarm
    assert again.at_ms == T0 + 50 * S and again.new_jump


def test_a_step_back_leaves_the_modes_on_monotonic_time() -> None:
    t = Terminal()
    t.read(T0, 0)
    stepped = t.read(T0 - 3600 * S, 10 * S)
    assert stepped.at_ms == T0 + 10 * S and stepped.off_ms == -3610 * S


def test_ntp_setting_an_unsynced_clock_is_the_one_step_followed() -> None:
    t = Terminal()
    t.read(T0 - 2 * DAY, 0, synced=False)  # booted with the time it had at shutdown
    synced = t.read(T0, 30 * S, synced=True)
    assert synced.at_ms == T0 and not synced.new_jump


def test_after_a_reboot_the_modes_never_go_back() -> None:
    t = Terminal()
    t.read(T0, 0)
    t.read(T0 + DAY, DAY)
    # Rebooted; fake-hwclock restored an hour-old time, unsynced: no alarm, no step back.
    boot = t.read(T0 + DAY - 3600 * S, 5 * S, boot="b2", synced=False)
    assert boot.at_ms == T0 + DAY and not boot.new_jump
    # An unsynced clock ahead is not followed either (it would prune a period early).
    assert t.read(T0 + 30 * DAY, 10 * S, boot="b2", synced=False).at_ms == T0 + DAY + 5 * S
    # NTP answers: followed.
    assert t.read(T0 + DAY + 7200 * S, 20 * S, boot="b2", synced=True).at_ms == (
        T0 + DAY + 7200 * S)
    # Rebooted with a synchronised clock behind what the modes used: held, and told.
    behind = t.read(T0, 5 * S, boot="b3", synced=True)
    assert behind.at_ms == T0 + DAY + 7200 * S and behind.new_jump


def test_the_tolerance_is_a_minute() -> None:
    for step_ms, doubted in ((TOLERANCE_MS, False), (TOLERANCE_MS + 1, True),
                             (-TOLERANCE_MS - 1, True)):
        t = Terminal()
        t.read(T0, 0)
        assert t.read(T0 + 10 * S + step_ms, 10 * S).doubted is doubted, step_ms
