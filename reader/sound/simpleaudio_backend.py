"""Sound through simpleaudio (unmaintained; see backends.py for why `alsa` is the default).

simpleaudio opens ALSA's `default` PCM for every sound and plays it on a C thread of its
own. Its quirks shape this class:
- it ignores the device name: only `default` (set it in asound.conf);
- a stopped sound still drains its buffer (~100 ms) before the device is closed, so a
  new sound waits for that, or a device without mixing would answer "busy";
- open and set-up run with the GIL held: a device that blocks there freezes every thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import simpleaudio
from simpleaudio._simpleaudio import SimpleaudioError

from reader.errors import AudioError
from reader.sound.clips import Clip
from reader.system.i18n import _

POLL_S = 0.005
RELEASE_WAIT_S = 0.5  # longest wait for a stopped sound to let go of the device


class SimpleaudioBackend:
    def __init__(self, device: str = "default") -> None:
        self.device = device  # simpleaudio always plays to `default`
        self._current: simpleaudio.PlayObject | None = None

    def open(self, rate: int, channels: int) -> None:
        # simpleaudio has no open: a few ms of silence show whether the device answers.
        self._start(b"\0\0" * channels * (rate // 200), rate, channels)
        self._release()

    def play(self, clip: Clip, interrupted: Callable[[], bool],
             on_start: Callable[[float], None]) -> None:
        self._release()
        before = time.monotonic()
        self._start(clip.pcm, clip.rate, clip.channels)
        on_start(before)
        current = self._current
        while current is not None and current.is_playing():
            time.sleep(POLL_S)
            if interrupted():
                current.stop()
                break

    def close(self) -> None:
        if self._current is not None:
            self._current.stop()
        self._release()

    def _start(self, pcm: bytes, rate: int, channels: int) -> None:
        try:
            self._current = simpleaudio.play_buffer(pcm, channels, 2, rate)
        except SimpleaudioError as exc:
            raise AudioError(_("simpleaudio: {why}").format(why=exc)) from exc

    def _release(self) -> None:
        current, self._current = self._current, None
        deadline = time.monotonic() + RELEASE_WAIT_S
        while current is not None and current.is_playing() and time.monotonic() < deadline:
            time.sleep(POLL_S)
