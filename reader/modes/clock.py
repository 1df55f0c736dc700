"""The modes' clock: the time check 9 decides and mode state is pruned on, which a wall
clock that lies cannot move.

A Pi has no real-time clock: it boots with the time it had at shutdown (fake-hwclock) or
1970, NTP steps it later, and anyone with root (or a broken NTP server) can step it
again. Deciding on the wall clock alone let a step forward prune this month's coupon
counts (and a step back give a second month's worth), and a step back defeat debounce.
So the modes go by a timeline of their own:

- Within one boot it is an anchor plus the monotonic clock (CLOCK_BOOTTIME). Linux moves
  the wall clock against that clock only by steps (NTP's slewing runs both at one rate),
  so wall minus timeline stays put until someone steps the clock. A step forward of up to
  TOLERANCE_MS is followed (the anchor moves to the wall clock), and so is NTP bringing
  an unsynchronised clock into sync (the step a Pi takes after booting with yesterday's
  time). A step back is never followed: the timeline goes on, a little ahead of the wall
  clock. A step of more than TOLERANCE_MS other than NTP's is a jump: events keep the
  wall clock's `at` but say `clock_synced: false`, and the city is told by an alarm,
  once per jump. A wall clock that comes back within TOLERANCE_MS is followed again.
- It never goes backwards, not even across a reboot: it starts again from `floor`, the
  latest time the modes used (the anchor, and the newest time in the mode state), or from
  the wall clock once NTP has synchronised it, if that is later. An unsynchronised clock
  ahead of the floor is not followed until it is synchronised: a leap forward would prune
  (and open) a period early, and no later correction could undo that.

The anchor is stored (one row, in the transaction of the tap or prune that read it) only
when it changes: a new boot, a step followed, a jump seen or over, the sync state. A tap
on a steady clock writes nothing more than before.

What this costs: after a jump the modes keep their own time until the wall clock agrees
again; a clock that was wrong while NTP called it synchronised stays wrong for the modes
(the alarm says so); while unsynchronised after a reboot, the modes' time stands still
for the time the terminal was off. None of it gives anyone more than the rules allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

TOLERANCE_MS = 60_000  # a step forward up to this is followed; any larger is a jump
SLACK_MS = 1_000  # the wall clock within this of the timeline counts as on it


@dataclass(frozen=True)
class Reading:
    """One look at the clocks (reader/system/bootinfo.py)."""

    wall_ms: int
    boot_id: str
    mono_ns: int
    synced: bool


@dataclass(frozen=True)
class Anchor:
    """Where the modes' timeline was last set (stored; one row)."""

    boot_id: str
    mono_ns: int
    mode_ms: int  # the modes' time at mono_ns
    synced: bool  # the wall clock's sync state when last looked at
    off_ms: int  # the wall clock minus the timeline when last looked at


@dataclass(frozen=True)
class ModeTime:
    at_ms: int  # what modes decide and prune on
    anchor: Anchor  # the anchor from now on
    store: bool  # it changed: write it with the tap or prune that read it
    new_jump: bool  # a jump the previous reading had not seen: raise the alarm

    @property
    def off_ms(self) -> int:
        return self.anchor.off_ms

    @property
    def doubted(self) -> bool:
        """The wall clock is off the modes' clock: an event's `at` is not to be trusted."""
        return _jumped(self.anchor.off_ms)


def _jumped(off_ms: int) -> bool:
    return abs(off_ms) > TOLERANCE_MS


def needs_floor(anchor: Anchor | None, now: Reading) -> bool:
    """Whether `advance` needs the floor: a new database, or the first look of a boot."""
    return anchor is None or anchor.boot_id != now.boot_id


def advance(anchor: Anchor | None, now: Reading, floor_ms: int | None = None) -> ModeTime:
    """The modes' time at `now`, from the stored anchor. `floor_ms`: the newest time the
    mode state holds (when needs_floor), below which the modes' time never goes."""
    if anchor is None or anchor.boot_id != now.boot_id:
        known = [t for t in (floor_ms, anchor.mode_ms if anchor else None) if t is not None]
        floor = max(known) if known else None
        at = now.wall_ms if floor is None or (now.synced and now.wall_ms >= floor) else floor
        new = Anchor(now.boot_id, now.mono_ns, at, now.synced, now.wall_ms - at)
        # An unsynchronised clock after a reboot is the usual boot, not a jump.
        jump = _jumped(new.off_ms) and now.synced
        return ModeTime(at, new, True, jump)
    along = anchor.mode_ms + max(0, now.mono_ns - anchor.mono_ns) // 1_000_000
    ahead = now.wall_ms - along
    ntp_set_it = now.synced and not anchor.synced
    if ahead > SLACK_MS and (ahead <= TOLERANCE_MS or ntp_set_it):
        new = Anchor(now.boot_id, now.mono_ns, now.wall_ms, now.synced, 0)  # followed
        return ModeTime(now.wall_ms, new, True, False)
    off = anchor.off_ms if abs(ahead - anchor.off_ms) <= SLACK_MS else ahead
    jump = _jumped(off) and (not _jumped(anchor.off_ms) or
                             abs(off - anchor.off_ms) > TOLERANCE_MS)
    new = replace(anchor, synced=now.synced, off_ms=off)
    # The anchor's mono_ns and mode_ms stay: the timeline is unchanged, only what is
    # known of the wall clock beside it.
    changed = new.synced != anchor.synced or _jumped(off) != _jumped(anchor.off_ms) or jump
    return ModeTime(along, new, changed, jump)
