"""The terminal: wiring and the tap loop.

Start-up runs in a fixed order (queue, trust, sound, reader, sync) and shutdown in
reverse, in `finally:`. The tap loop runs in the main thread and owns the queue
connection; the city sync has its own thread and its own connection. Nothing a card,
the speaker or the broker does can end the loop: each tap is wrapped once, here.

Per tap: checks 1-8 (tap.py), the mode's check 9, then the event is committed to
SQLite and only then the sound starts, so a citizen who heard the chime has a tap on
disk. A tap that cannot be stored gets the error sound.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .bootinfo import boot_id, clock_synced, monotonic_ns
from .config import Settings
from .errors import ConfigError, StorageFullError, SukumoError
from .events import build_event, rfc3339_ms
from .logs import fields
from .modes import Mode, build_mode, profile_for
from .queue import EventQueue
from .runtime_config import apply_bundle_settings
from .sdnotify import Notifier
from .sound import SoundPlayer
from .tap import Profile, TapOutcome, perform_tap
from .transports import TapSource, Transport, create_transport
from .trust import TrustStore

log = logging.getLogger(__name__)
STATUS_EVERY_S = 2.0


@dataclass
class LastTap:
    at: str
    result: str
    reason: str | None
    mid: str | None


@dataclass
class TerminalState:
    started_at: float = field(default_factory=time.time)
    last_tap: LastTap | None = None
    last_event: dict[str, Any] | None = None  # for the demo's live view
    last_sound: str | None = None
    taps: int = 0
    unrecorded: int = 0  # taps that could not be stored (storage full)


class Terminal:
    """One running terminal. `run()` until `stop()`; tests drive `tap_once` directly."""

    def __init__(self, settings: Settings, *, transport: Transport | None = None,
                 player: SoundPlayer | None = None, wall: Callable[[], float] = time.time,
                 with_sync: bool = True) -> None:
        self.settings = settings
        # Config bundles apply over the file's settings, not over the previous bundle's:
        # a key the city drops from a later bundle falls back to the file's value.
        self.base_settings = settings
        self.wall = wall
        self.state = TerminalState()
        self._stop = threading.Event()
        self._reconfigure = threading.Event()
        self._exit_stack: list[Callable[[], None]] = []
        if not settings.verify.root_public_key:
            raise ConfigError("setting verify.root_public_key is empty: pin the deployment's "
                              "root key with `sukumo-reader provision` (or the demo's dev root)")
        self.notifier: Notifier | None = None
        try:
            self._start(settings, transport, player, with_sync)
        except BaseException:
            self._unwind()  # what was opened is closed again, in reverse
            raise

    def _start(self, settings: Settings, transport: Transport | None,
               player: SoundPlayer | None, with_sync: bool) -> None:
        q = settings.queue
        self.queue = EventQueue.open(settings.paths.database, warn_mb=q.warn_mb,
                                     budget_mb=q.budget_mb)
        self._exit_stack.append(self.queue.close)
        self.trust = TrustStore(bytes.fromhex(settings.verify.root_public_key),
                                settings.terminal.muni, settings.terminal.id,
                                settings.paths.bundle_dir)
        # A config bundle this terminal cannot run with is refused at the door, not held.
        self.trust.config_check = lambda bundle: apply_bundle_settings(self.base_settings, bundle)
        self.trust.load_persisted()
        self.trust.add_listener(self._on_bundle)
        self._own_player = player is None  # a player handed in (tests, bench) is kept as is
        self.player = player or SoundPlayer.from_settings(settings.sound)
        self._exit_stack.append(lambda: self.player.close())  # the player may be rebuilt
        self.mode: Mode = build_mode(settings)
        self.profile: Profile = profile_for(settings)
        self.source = TapSource(transport or create_transport(settings.reader))
        self._exit_stack.append(self.source.close)
        self.sync = None
        if with_sync:
            from .sync import CitySync

            self.sync = CitySync(settings, self.trust, self.status)
            self._exit_stack.append(self.sync.stop)
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
        if self.notifier:
            self.notifier.ready(f"waiting for taps ({self.mode.name})")
        next_status = 0.0
        while not self._stop.is_set():
            try:
                link = self.source.next_tap(self.settings.reader.poll_timeout_s)
                if link is not None:
                    self.tap_once(link)
                if self._reconfigure.is_set():
                    self._apply_config_bundle()
                if time.monotonic() >= next_status:
                    self.write_status()
                    next_status = time.monotonic() + STATUS_EVERY_S
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

    def close(self) -> None:
        if self.notifier:
            self.notifier.stopping()
        self.write_status(stopped=True)  # while the queue is still open
        self._unwind()

    def _unwind(self) -> None:
        for closer in reversed(self._exit_stack):
            try:
                closer()
            except Exception:
                log.exception("shutdown step failed")
        self._exit_stack.clear()

    # -- one tap ------------------------------------------------------------------------
    def tap_once(self, link: Any) -> dict[str, Any] | None:
        """Verify, decide, record, then sound. Returns the stored event (None: not stored)."""
        settings = self.settings
        try:
            outcome = perform_tap(link, self.profile, self.trust, settings.terminal.id,
                                  clock_skew_s=settings.verify.clock_skew_s, wall=self.wall)
            return self._record(outcome)
        except SukumoError as exc:
            log.error("tap failed", **fields(why=str(exc)))
        except Exception:  # the daemon never dies from a card
            log.exception("tap failed with an internal error")
        self.player.play("error")
        return None

    def _record(self, outcome: TapOutcome) -> dict[str, Any] | None:
        reason, detail, extra, sound, urgent = outcome.reason, {}, [], "rejected", False
        if reason is None:
            assert outcome.record is not None
            decision = self.mode.decide(self.queue.db, outcome.record, outcome.at_ms)
            reason, detail, extra = decision.reason, decision.detail, decision.extra_sql
            sound, urgent = decision.sound, decision.send_now
        synced = clock_synced()
        event = build_event(outcome, mode=self.mode.name, facility=self.settings.terminal.facility,
                            clock_synced=synced, reason=reason, detail=detail)
        try:
            stored = self.queue.append(event, boot_id=boot_id(), mono_ns=monotonic_ns(),
                                       clock_synced=synced, extra_sql=extra, urgent=urgent)
        except StorageFullError as exc:
            self.state.unrecorded += 1
            self.player.play("error")
            log.error("tap not recorded: storage full", **fields(
                why=str(exc), result=event["result"], unrecorded=self.state.unrecorded))
            return None
        self.player.play(sound)  # after the commit: a chime means the tap is on disk
        self.state.last_event, self.state.last_sound = stored, sound
        card = stored["card"] or {}
        self.state.taps += 1
        self.state.last_tap = LastTap(stored["at"], stored["result"], reason, card.get("mid"))
        log.info("tap recorded", **fields(
            id=stored["id"], seq=stored["seq"], result=stored["result"], reason=reason,
            mid=card.get("mid"), sound=sound, detail=detail or None))
        if self.sync is not None:
            # Every event goes out as soon as the link is up (not held to fill a batch);
            # an urgent one (youth watch) also jumps any backlog.
            self.sync.wake()
        return stored

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
        log.info("config bundle applied", **fields(
            mode=mode.name, facility=new.terminal.facility,
            version=self.trust.versions.get("config")))

    # -- status -------------------------------------------------------------------------
    def healthy(self) -> bool:
        try:
            self.queue.db.execute("select 1").fetchone()
        except Exception:
            return False
        return True

    def status(self) -> dict[str, Any]:
        summary = self.queue.summary()
        last = self.state.last_tap
        return {
            "pid": os.getpid(),
            "started_at": rfc3339_ms(int(self.state.started_at * 1000)),
            "updated_at": rfc3339_ms(),
            "tid": self.settings.terminal.id,
            "mode": self.mode.name,
            "facility": self.settings.terminal.facility,
            "reader": self.source.state,
            "audio": self.player.state,
            "last_tap": last.__dict__ if last else None,
            "taps": self.state.taps,
            "unrecorded": self.state.unrecorded,
            "queue": summary.as_dict(),
            "sync": {"state": self.sync.state if self.sync else "offline",
                     "last_ack_at": self.sync.last_ack_at if self.sync else None,
                     **(asdict(self.sync.counters) if self.sync else {})},
            "versions": {"app": __version__, **self.trust.versions},
            "rejected_bundles": self.trust.refused,
            "alarms": list(summary.alarms),
        }

    def write_status(self, stopped: bool = False) -> None:
        try:
            data = self.status()
        except Exception as exc:  # a closed queue at shutdown: still say we stopped
            data = {"pid": os.getpid(), "updated_at": rfc3339_ms(), "error": str(exc)}
        data["running"] = not stopped
        if self.notifier and not stopped and "queue" in data:
            # What `systemctl status sukumo-reader` shows the technician in one line.
            last = data["last_tap"]
            self.notifier.status(
                f"{data['mode']}: reader {data['reader']}, audio {data['audio']}, "
                f"{data['queue']['pending']} waiting for the city ({data['sync']['state']}), "
                + (f"last tap {last['at']} {last['result']}" if last else "no tap yet"))
        path = self.settings.paths.state_dir / "status.json"
        try:
            _write_json_atomic(path, data)
        except OSError as exc:
            log.warning("status file not written", **fields(path=str(path), why=str(exc)))


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    os.replace(tmp, path)  # readers never see half a file; no fsync: it is rewritten anyway
