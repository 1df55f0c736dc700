"""The terminal: wiring and the tap loop.

Start-up takes the terminal's lock first (lock.py: one daemon per state directory), then
runs in a fixed order (trust, queue, sound, reader, sync) on one ExitStack, so
shutdown, and a start-up that fails half-way, close what was opened in reverse. The tap
loop runs in the main thread and owns the queue connection; the city sync has its own
thread and its own connection. Nothing a card, the speaker or the broker does can end
the loop: each tap is wrapped once, here.

Per tap: checks 1-8 (tap.py), then, inside the queue's write transaction, the mode's
check 9 on the modes' clock (reader/modes/clock.py) and the event with the mode's state
updates, committed; only then the sound starts, so a citizen who heard the chime has a
tap on disk. A tap that cannot be stored gets the error sound.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reader import __version__
from reader.bundles import TrustStore
from reader.card.profiles import Profile
from reader.card.reasons import Reason
from reader.config import Settings
from reader.config.bundle import apply_bundle_settings
from reader.config.profiles import profile_for
from reader.errors import (
    ConfigError,
    QueueError,
    ReaderBusyError,
    StorageFailedError,
    StorageFullError,
    SukumoError,
)
from reader.feedback import Feedback, unrecorded, verdict_of
from reader.modes import Mode, ModeState, Sound, StateUpdate
from reader.modes.base import resident
from reader.modes.clock import ModeTime, Reading
from reader.queue import EventQueue
from reader.queue.event_queue import Recording
from reader.queue.pseudonym import Pseudonyms
from reader.sound import SoundPlayer
from reader.system.bootinfo import boot_id, clock_synced, monotonic_ns
from reader.system.logs import Repeats, fields
from reader.system.sdnotify import Notifier
from reader.terminal.lock import DaemonLock
from reader.terminal.policy import build_mode, retention, state_keepers
from reader.terminal.status import write_status
from reader.terminal.tap import TapOutcome, perform_tap
from reader.transports import CardLink, TapSource, Transport, create_transport
from reader.wire.event import Event
from reader.wire.status import LastTap, SyncStatus, TerminalStatus

log = logging.getLogger(__name__)
STATUS_EVERY_S = 2.0
# Mode state is forgotten once no mode needs it; the shortest need is check-in's
# debounce window (60 s by default), so a row outlives it by at most this much.
PRUNE_EVERY_S = 10.0


@dataclass
class TerminalState:
    started_at: float = field(default_factory=time.time)
    last_tap: LastTap | None = None
    last_event: Event | None = None  # for the demo's live view
    last_sound: Sound | None = None
    taps: int = 0
    unrecorded: int = 0  # taps not stored, whatever the cause (full, EIO, read-only, a bug)


class Terminal:
    """One running terminal. `run()` until `stop()`; tests drive `tap_once` directly."""

    def __init__(self, settings: Settings, *, transport: Transport | None = None,
                 player: SoundPlayer | None = None, wall: Callable[[], float] = time.time,
                 with_sync: bool = True, pin_factory: Any = None,
                 mono_ns: Callable[[], int] = monotonic_ns) -> None:
        self.settings = settings
        # Config bundles apply over the file's settings, not over the previous bundle's:
        # a key the city drops from a later bundle falls back to the file's value.
        self.base_settings = settings
        self.wall = wall
        self.mono_ns = mono_ns  # with `wall`: the modes' clock (reader/modes/clock.py)
        self.state = TerminalState()
        # "tap recorded" per card and verdict: the journal's budget (logs.Repeats)
        self.tap_lines: Repeats[tuple[str | None, str, str | None]] = Repeats()
        self._stop = threading.Event()
        self._reconfigure = threading.Event()
        self._checkpoint_failed = False
        self.notifier: Notifier | None = None
        self._pin_factory = pin_factory  # gpiozero's, for the status light (tests: mock)
        with contextlib.ExitStack() as stack:  # a failed start closes what it opened
            self._start(stack, settings, transport, player, with_sync)
            self._exit_stack = stack.pop_all()

    def _start(self, stack: contextlib.ExitStack, settings: Settings,
               transport: Transport | None, player: SoundPlayer | None,
               with_sync: bool) -> None:
        # Trust first: without a root key nothing could be verified, so the terminal
        # refuses to start before it touches the queue. A config bundle this terminal
        # cannot run with is refused at the door, not held.
        state_dir = settings.paths.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"setting paths.state_dir = {state_dir}: cannot create it: "
                              f"{exc.strerror or exc}") from None
        # Before anything else is opened: a second daemon would record every card twice.
        stack.callback(DaemonLock.acquire(state_dir).release)
        self.trust = TrustStore.from_settings(
            settings, config_check=lambda bundle: apply_bundle_settings(self.base_settings,
                                                                        bundle))
        q = settings.queue
        self.pseudonyms = Pseudonyms.load_or_create(settings.paths.pseudonym_key)
        self.queue = stack.enter_context(EventQueue.open(
            settings.paths.database, warn_mb=q.warn_mb, budget_mb=q.budget_mb,
            pseudonyms=self.pseudonyms))
        self.keepers = state_keepers(settings)
        self.trust.add_listener(self._on_bundle)
        self._own_player = player is None  # a player handed in (tests, bench) is kept as is
        self.player = player or SoundPlayer.from_settings(settings.sound)
        stack.callback(lambda: self.player.close())  # the player may be rebuilt
        self.feedback = Feedback.from_settings(settings.feedback, self._pin_factory)
        stack.callback(self.feedback.close)
        self.mode: Mode = build_mode(settings)
        self.profile: Profile = profile_for(settings)
        # The reader is claimed when opened: a daemon of another state directory on the
        # same reader is refused (exit 2) instead of recording every card twice.
        self.source = TapSource(transport or create_transport(settings.reader), claim=True)
        stack.callback(self.source.close)
        self.sync = None
        if with_sync:
            from reader.sync import CitySync  # paho only where the terminal syncs

            self.sync = CitySync(settings, self.trust, self.status)
            stack.callback(self.sync.stop)
        if self.trust.config_settings:
            self._apply_config_bundle()
        self.notifier = Notifier.from_env()

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> None:
        if self.sync is not None:
            self.sync.start()
        log.info("terminal ready", **fields(
            tid=self.settings.terminal.id, mode=self.mode.name, app=__version__,
            transport=self.source.transport.name, trust=self.trust.versions.get("trust", 0)))
        if self.source.transport.name == "virtual":
            log.warning("virtual reader: this terminal reads no card, only files in "
                        "[reader] virtual_feed; set [reader] transport for a real reader",
                        **fields(feed=str(self.settings.reader.virtual_feed)))
        if self.notifier:
            self.notifier.ready(f"waiting for taps ({self.mode.name})")
        # After READY: the full check takes seconds per million queued events.
        self.queue.start_integrity_check()
        next_status = next_prune = 0.0
        while not self._stop.is_set():
            try:
                link = self.source.next_tap(self.settings.reader.poll_timeout_s)
                if link is not None:
                    self.tap_once(link)
                self._checkpoint()  # its chime is playing: the WAL's checkpoint, if due
                if self._reconfigure.is_set():
                    self._apply_config_bundle()
                if time.monotonic() >= next_status:
                    if self.trust.unstored:
                        self.trust.store_pending()  # until the revocation is on disk
                    self.write_status()
                    self._log_repeats()
                    next_status = time.monotonic() + STATUS_EVERY_S
                if time.monotonic() >= next_prune:
                    self.queue.prune(functools.partial(retention, self.keepers),
                                     self._reading(int(self.wall() * 1000)))
                    next_prune = time.monotonic() + PRUNE_EVERY_S
            except ReaderBusyError:
                raise  # another daemon reads this reader: exit 2, naming it
            except Exception:  # a bug here must not end the loop; no watchdog ping this
                log.exception("tap loop iteration failed")  # turn, so a bug every turn
                # still gets the daemon restarted by systemd
                time.sleep(0.1)
                continue
            if self.notifier and self.healthy():
                # Only from this loop, only while it turns and the database answers:
                # a wedged loop stops the pings and systemd restarts us.
                self.notifier.watchdog()

    def stop(self) -> None:
        self._stop.set()

    def _checkpoint(self) -> None:
        """Between taps, never in one (reader/queue/checkpoint.py). A failure here loses
        nothing (the frames stay in the WAL): the next tap's commit meets the disk's state
        and is voided if it fails."""
        try:
            self.queue.checkpoint_if_due()
            self._checkpoint_failed = False
        except QueueError as exc:
            if not self._checkpoint_failed:  # once, not every turn of the loop
                log.warning("WAL checkpoint failed", **fields(why=str(exc)))
            self._checkpoint_failed = True

    def close(self) -> None:
        if self.notifier:
            self.notifier.stopping()
        self._log_repeats(every=True)
        self.write_status(stopped=True)  # while the queue is still open
        self._exit_stack.close()

    # -- one tap ------------------------------------------------------------------------
    def tap_once(self, link: CardLink) -> Event | None:
        """Verify, decide, record, then sound. Returns the stored event (None: not stored)."""
        settings = self.settings
        try:
            outcome = perform_tap(link, self.profile, self.trust, settings.terminal.id,
                                  clock_skew_s=settings.verify.clock_skew_s, wall=self.wall,
                                  deadline_s=settings.reader.tap_deadline_s)
            return self._record(outcome)
        except SukumoError as exc:
            log.error("tap failed", **fields(why=str(exc)))
        except Exception:  # the daemon never dies from a card
            log.exception("tap failed with an internal error")
        self.state.unrecorded += 1  # whatever the cause: the citizen heard the error
        self.player.play(Sound.ERROR)
        self.feedback.show(unrecorded(_now_ms()))
        return None

    def _record(self, outcome: TapOutcome) -> Event | None:
        now = self._reading(outcome.at_ms)
        verdict: list[tuple[Reason | None, Sound, dict[str, Any]]] = []

        def decide(state: ModeState, at: ModeTime) -> Recording:
            # Inside the queue's write transaction: see EventQueue.record.
            reason, sound, urgent = outcome.reason, Sound.REJECTED, False
            detail: dict[str, Any] = {}
            updates: tuple[StateUpdate, ...] = ()
            if reason is None:
                assert outcome.record is not None
                decision = self.mode.decide(state, resident(
                    outcome.record, self.settings.terminal.muni), at.at_ms)
                reason, detail, updates = decision.reason, dict(decision.detail), decision.updates
                sound, urgent = decision.sound, decision.send_now
            verdict[:] = [(reason, sound, detail)]
            # A wall clock the modes do not follow: the city must doubt this `at`.
            event = outcome.event(mode=self.mode.name, facility=self.settings.terminal.facility,
                                  clock_synced=now.synced and not at.doubted, reason=reason,
                                  detail=detail)
            return Recording(event, updates, urgent)

        try:
            stored = self.queue.record(decide, now)
        except QueueError as exc:  # full, failing (EIO), read-only: the same for a citizen
            self.state.unrecorded += 1
            self.player.play(Sound.ERROR)
            self.feedback.show(unrecorded(_now_ms()))
            cause = ("storage full" if isinstance(exc, StorageFullError) else
                     "storage failed" if isinstance(exc, StorageFailedError) else "queue error")
            log.error(f"tap not recorded: {cause}", **fields(
                why=str(exc), accepted=bool(verdict) and verdict[0][0] is None,
                unrecorded=self.state.unrecorded))
            return None
        reason, sound, detail = verdict[0]
        self.player.play(sound)  # after the commit: a chime means the tap is on disk
        # The same verdict, seen; a coupon by the name the city gave it, never its code.
        self.feedback.show(verdict_of(stored, _now_ms(), self.settings.modes.coupon.names))
        self.state.last_event, self.state.last_sound = stored, sound
        result = "accepted" if stored.accepted else "rejected"
        # The pseudonym, never the member id: logs go to the persistent journal.
        mid = self.pseudonyms.of(stored.card.mid) if stored.card else None
        self.state.taps += 1
        self.state.last_tap = LastTap(stored.at, result, reason, mid)
        if self.tap_lines.admit((mid, result, reason)):  # the same card again and again:
            log.info("tap recorded", **fields(  # the first lines, then a count
                id=stored.id, seq=stored.seq, result=result, reason=reason, mid=mid,
                sound=sound, detail=detail or None))
        if self.sync is not None:
            # Every event goes out as soon as the link is up (not held to fill a batch);
            # an urgent one (youth watch) also jumps any backlog.
            self.sync.wake()
        return stored

    def _log_repeats(self, every: bool = False) -> None:
        for (mid, result, reason), left_out in self.tap_lines.due(every):
            log.info("tap lines left out", **fields(
                mid=mid, result=result, reason=reason, taps=left_out,
                window_s=self.tap_lines.window_s))

    def _reading(self, wall_ms: int) -> Reading:
        return Reading(wall_ms, boot_id(), self.mono_ns(), clock_synced())

    # -- config bundles -----------------------------------------------------------------
    def _on_bundle(self, kind: str, version: int) -> None:
        if kind == "config":
            self._reconfigure.set()  # applied by the tap loop, between taps

    def _apply_config_bundle(self) -> None:
        self._reconfigure.clear()
        try:
            new = apply_bundle_settings(self.base_settings, self.trust.config_settings or {})
            mode, profile = build_mode(new), profile_for(new)
        except ConfigError as exc:
            log.error("config bundle not applied; keeping current settings", **fields(why=str(exc)))
            return
        if new.sound != self.settings.sound and self._own_player:
            # Volume is applied when clips are loaded: a new player, between two taps.
            old, self.player = self.player, SoundPlayer.from_settings(new.sound)
            old.close()
        if new.log.level != self.settings.log.level:
            logging.getLogger().setLevel(new.log.level)
        self.settings, self.mode, self.profile = new, mode, profile
        self.trust.accept(new.verify.accept_munis)  # the sync follows their denylists
        self.keepers = state_keepers(new)
        log.info("config bundle applied", **fields(
            mode=mode.name, facility=new.terminal.facility,
            version=self.trust.versions.get("config")))

    # -- status -------------------------------------------------------------------------
    def healthy(self) -> bool:
        try:
            self.queue.ping()
        except Exception:
            return False
        return True

    def status(self) -> TerminalStatus:
        sync = self.sync.status() if self.sync else SyncStatus("offline")
        return TerminalStatus(
            tid=self.settings.terminal.id, mode=self.mode.name,
            facility=self.settings.terminal.facility, reader=self.source.state,
            audio=self.player.state, queue=self.queue.summary(), sync=sync,
            app_version=__version__, bundle_versions=self.trust.versions,
            rejected_bundles=self.trust.refused, pid=os.getpid(),
            started_at_ms=int(self.state.started_at * 1000),
            updated_at_ms=int(time.time() * 1000), last_tap=self.state.last_tap,
            taps=self.state.taps, unrecorded=self.state.unrecorded, alarms=self.trust.alarms)

    def write_status(self, stopped: bool = False) -> None:
        status: TerminalStatus | None = None
        problem: dict[str, Any] = {}
        try:
            status = self.status()
        except Exception as exc:  # a closed queue at shutdown: still say we stopped
            problem = {"pid": os.getpid(), "error": str(exc)}
        if self.notifier and not stopped and status is not None:
            self.notifier.status(status.systemd_line())
        if status is not None:
            self.feedback.state(ready=not stopped and status.reader == "ok",
                                needs_technician=status.needs_technician, running=not stopped)
        write_status(self.settings.paths.status_file, status, running=not stopped,
                     problem=problem)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
