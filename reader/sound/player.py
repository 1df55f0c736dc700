"""SoundPlayer: the tap loop says `play("accepted")` and goes on at once.

Theory of operation. `play()` only stores `(generation, name)` in a one-slot mailbox and
drops a wake-up token into a SimpleQueue: plain assignments and one C call, no lock a
worker could be holding, so the caller never waits, not even for the GIL hand-over
(5 ms) that any Python lock or Event could cost. The worker thread owns the device (the
backend) and plays whatever is in the slot; a newer request overwrites an older one that
was not started yet ("latest wins"), and the backend, which polls "has the generation
moved on?", cuts the sound playing short, so a citizen always hears the sound for the card
in their hand. Device trouble is the worker's alone: it turns `state` to "missing", logs
once, and tries the device again now and then (a replugged USB speaker comes back); the
tap loop only ever sees it through `state`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from typing import Literal

from reader.config import SoundSettings
from reader.errors import AudioError
from reader.sound.backends import SoundBackend, create_backend
from reader.sound.clips import SOUND_NAMES, Clip, load_clips
from reader.system.logs import fields

log = logging.getLogger(__name__)

State = Literal["ok", "missing", "disabled"]

RETRY_S = 10.0  # a missing device is tried again at most this often (each try logs in ALSA)
OPEN_WAIT_S = 1.0  # from_settings waits this long for the first open, so `state` is known
STALL_S = 2.0  # a sound asked for but not started after this long: the device hangs


class SoundPlayer:
    """Plays the terminal's sounds on one worker thread. Build with `from_settings`."""

    def __init__(self, clips: dict[str, Clip], backend: SoundBackend | None,
                 *, retry_s: float = RETRY_S) -> None:
        self._clips = clips
        self._backend = backend
        self._retry_s = retry_s
        self._state: State = "disabled" if backend is None else "ok"
        self._last_try = float("-inf")
        self._last_started: tuple[str, float] | None = None
        self._waiting_since: float | None = None  # a sound asked for and not yet started
        self._warned: set[str] = set()
        self._problem = ""  # why the device is missing, for `sound test`
        self._generations = itertools.count(1)
        self._request: tuple[int, str | None] = (0, None)  # the one-slot mailbox
        self._handled = -1  # generation the worker finished; -1 while it opens the device
        self._wakeups: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._closing = False
        self._worker: threading.Thread | None = None
        if backend is not None:
            if not clips:
                self._state = "missing"  # nothing to play is as silent as no speaker
            self._worker = threading.Thread(target=self._run, name="sound", daemon=True)
            self._worker.start()

    @classmethod
    def from_settings(cls, settings: SoundSettings, backend: SoundBackend | None = None,
                      *, open_wait_s: float = OPEN_WAIT_S) -> SoundPlayer:
        """Read every WAV once (volume applied), pick the backend and open the device.
        Never raises for a missing device or missing files: the player is then "missing"."""
        if not settings.enabled:
            return cls({}, None)
        clips = load_clips(settings.directory, settings.volume)
        if backend is None:
            try:
                backend = create_backend(settings.backend, settings.device)
            except AudioError as exc:
                log.warning("audio missing", **fields(error=str(exc)))
                player = cls(clips, None)
                player._state = "missing"
                return player
        player = cls(clips, backend)
        if not player.flush(open_wait_s):
            # A device that hangs in open (busy, broken driver) is as silent as none; the
            # worker turns the state back to "ok" if the open ever returns.
            player._set_missing(f"device did not open within {open_wait_s} s")
        return player

    @property
    def state(self) -> State:
        """"ok", "missing" (no device, a broken or hanging one, or no sound files) or
        "disabled" (`[sound] enabled = false`)."""
        waiting = self._waiting_since
        if self._state == "ok" and waiting is not None and time.monotonic() - waiting > STALL_S:
            return "missing"
        return self._state

    @property
    def last_started(self) -> tuple[str, float] | None:
        """(name, time.monotonic()) of the last sound whose samples reached the device."""
        return self._last_started

    @property
    def clips(self) -> dict[str, Clip]:
        return dict(self._clips)

    def play(self, name: str) -> None:
        """Start sound `name` soon, replacing any sound still playing. Never blocks, never
        raises: an unknown name or a missing device is logged and the caller goes on."""
        try:
            if name not in SOUND_NAMES:
                log.error("unknown sound", **fields(sound=name))
                return
            if name not in self._clips:
                self._warn_once(name, "sound not loaded", sound=name)
                return
            if self._worker is None:
                return
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            self._request = (next(self._generations), name)
            self._wakeups.put(None)
        except Exception:  # the tap loop must never see a sound problem
            log.exception("sound play failed", **fields(sound=name))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the worker is idle (every request handled, nothing playing). For
        tests and the CLI, which may poll; True when idle, False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._worker is not None and self._worker.is_alive():
            if self._handled == self._request[0]:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop the sound playing, release the device and end the worker (idempotent)."""
        self._closing = True
        self._wakeups.put(None)
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)

    def __enter__(self) -> SoundPlayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the worker thread -------------------------------------------------------------

    def _run(self) -> None:
        assert self._backend is not None
        if self._clips:
            self._try_open()
        handled = 0
        try:
            while not self._closing:
                generation, name = self._request
                if generation == handled or name is None:
                    self._handled = handled
                    self._wakeups.get()
                    continue
                handled = generation
                self._play_now(self._clips[name], generation)
                if self._request[0] == generation:
                    self._waiting_since = None
        finally:
            self._backend.close()
            self._handled = self._request[0]

    def _play_now(self, clip: Clip, generation: int) -> None:
        assert self._backend is not None
        if self._state == "missing" and not self._try_open():
            return
        try:
            self._backend.play(clip, lambda: self._request[0] != generation,
                               lambda t: self._started(clip.name, generation, t))
        except AudioError as exc:
            self._set_missing(str(exc))
        except Exception as exc:  # a backend bug must not end the worker
            log.exception("sound backend failed", **fields(sound=clip.name))
            self._set_missing(repr(exc))

    def _started(self, name: str, generation: int, when: float) -> None:
        self._last_started = (name, when)
        if self._request[0] == generation:  # else a newer sound is waiting for its turn
            self._waiting_since = None

    def _try_open(self) -> bool:
        assert self._backend is not None
        now = time.monotonic()
        if now - self._last_try < self._retry_s:
            return False
        self._last_try = now
        first = next(iter(self._clips.values()))
        try:
            self._backend.open(first.rate, first.channels)
        except AudioError as exc:
            self._set_missing(str(exc))
            return False
        except Exception as exc:
            log.exception("sound backend failed to open")
            self._set_missing(repr(exc))
            return False
        if self._state == "missing":
            log.info("audio device back")
        self._state = "ok"
        return True

    @property
    def problem(self) -> str:
        """Why the sound device is missing, in the reader's language ("" when it is not)."""
        return self._problem if self._state == "missing" else ""

    def _set_missing(self, error: str) -> None:
        self._problem = error
        if self._state != "missing":
            log.warning("audio missing; taps go on without sound", **fields(error=error))
        self._state = "missing"
        self._last_try = time.monotonic()

    def _warn_once(self, key: str, message: str, **kw: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, **fields(**kw))
