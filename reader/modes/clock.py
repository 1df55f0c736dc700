"""The modes' clock: the time check 9 decides and mode state is pruned on, which a wall
clock that lies cannot move.

A Pi has no real-time clock: it boots with the time it had at shutdown (fake-hwclock) or
1970, NTP steps it later, and anyone with root (or a broken NTP server) can step it
again. Deciding on the wall clock alone let a step forward prune this month's coupon
counts (and a step back give a second month's worth), and a step back defeat debounce.
So the modes go by a timeline of their own, kept in the queue database (one row, written
in the same transaction as the tap or the prune that read it):

- Within one boot it advances with the monotonic clock (CLOCK_BOOTTIME never steps). The
  wall clock is followed while it agrees with that timeline within TOLERANCE_MS, and when
  NTP brings an unsynchronised clock into sync (the one step that is expected: a Pi
  booting with yesterday's time). Any other step is a jump: the modes go on along their
  timeline, events keep the wall clock's `at` but say `clock_synced: false`, and the city
  is told by an alarm. A wall clock that comes back into agreement is followed again.
- It never goes backwards, not even across a reboot: after one, it starts from the last
  time the modes used, or from a synchronised wall clock ahead of it. An unsynchronised
  clock ahead of it is not followed until it is synchronised, since a leap forward would
  prune (and open) a period early, and a leap back could not undo that.

What this costs: a terminal whose clock was wrong while it was synchronised keeps that
wrong time for its modes until the wall clock agrees again (the alarm says so); while
unsynchronised after a reboot, the modes' time stands still for the time it was off.
Neither gives anyone more than the rules allow; both can give less.
"""

from __future__ import annotations

from dataclasses import dataclass

TOLERANCE_MS = 60_000  # smaller steps are followed: NTP's own corrections, a slow RTC


@dataclass(frozen=True)
class Reading:
    """One look at the clocks (reader/system/bootinfo.py)."""

    wall_ms: int
    boot_id: str
    mono_ns: int
    synced: bool


@dataclass(frozen=True)
class Anchor:
    """The last reading the modes' timeline was set from (stored; one row)."""

    boot_id: str
    mono_ns: int
    mode_ms: int  # the modes' time at that reading
    synced: bool
    off_ms: int  # the wall clock minus the modes' time then (0-ish: it was followed)


@dataclass(frozen=True)
class ModeTime:
    at_ms: int  # what modes decide and prune on
    anchor: Anchor  # to store with the tap or prune that used it
    new_jump: bool  # a jump the previous reading had not seen: raise the alarm

    @property
    def off_ms(self) -> int:
        return self.anchor.off_ms

    @property
    def doubted(self) -> bool:
        """The wall clock is not followed: an event's `at` is not to be trusted."""
        return abs(self.anchor.off_ms) > TOLERANCE_MS


def advance(anchor: Anchor | None, now: Reading) -> ModeTime:
    """The modes' time at `now`, given the stored anchor (None: a new database)."""
    if anchor is None:
        at = now.wall_ms
    elif anchor.boot_id != now.boot_id:  # rebooted: the monotonic clock started again
        follow = now.synced and now.wall_ms >= anchor.mode_ms
        at = now.wall_ms if follow else anchor.mode_ms
    else:
        along = anchor.mode_ms + max(0, now.mono_ns - anchor.mono_ns) // 1_000_000
        agrees = abs(now.wall_ms - along) <= TOLERANCE_MS
        synced_now = now.synced and not anchor.synced  # NTP set it: the expected step
        at = max(now.wall_ms, anchor.mode_ms) if agrees or synced_now else along
    new = Anchor(now.boot_id, now.mono_ns, at, now.synced, now.wall_ms - at)
    doubted = abs(new.off_ms) > TOLERANCE_MS
    if anchor is not None and anchor.boot_id != now.boot_id and not now.synced:
        doubted = False  # the usual boot: yesterday's time until NTP answers
    was = anchor is not None and abs(anchor.off_ms) > TOLERANCE_MS
    moved = anchor is not None and abs(new.off_ms - anchor.off_ms) > TOLERANCE_MS
    return ModeTime(at, new, doubted and (not was or moved))
