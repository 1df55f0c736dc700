"""Sound through libasound (ALSA) called with ctypes: no compiled extension to maintain,
and the GIL is released during every call, so a blocking device never stalls the tap loop.

The PCM is opened non-blocking once and kept open: a sound then starts with a single
`snd_pcm_writei` (the first write fills the buffer, which reaches ALSA's start threshold),
and a new sound stops the current one with `snd_pcm_drop`, which discards what is still
buffered at once instead of letting it drain.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import time
from collections.abc import Callable

from reader.errors import AudioError
from reader.sound.clips import Clip
from reader.system import plain
from reader.system.i18n import N_, _

_STREAM_PLAYBACK = 0
_MODE_NONBLOCK = 1
_FORMAT_S16_LE = 2
_ACCESS_RW_INTERLEAVED = 3
_STATE_PREPARED = 2
_STATE_RUNNING = 3

LATENCY_US = 100_000  # device buffer: long enough that a busy Pi never underruns mid-chime
POLL_MS = 10  # how often a playing sound looks at `interrupt`
CHUNK_FRAMES = 2048  # at most this much is written per call, so an interrupt is seen soon

_lib: ctypes.CDLL | None = None
# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
# The variadic tail is never read, so a fixed-argument callback is safe on every ABI we run.
_ALSA_ERROR_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                       ctypes.c_int, ctypes.c_char_p)
_SILENT_ALSA_ERRORS = _ALSA_ERROR_HANDLER(lambda *_: None)


def _libasound() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
        except OSError as exc:
            raise AudioError(_("libasound (ALSA) is not installed: {why}").format(why=exc)
                             ) from None
        pcm, vp, c_int, c_uint = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
        signatures: dict[str, tuple[list[type], type]] = {
            "snd_pcm_open": ([ctypes.POINTER(pcm), ctypes.c_char_p, c_int, c_int], c_int),
            "snd_pcm_set_params": ([pcm, c_int, c_int, c_uint, c_uint, c_int, c_uint], c_int),
            "snd_pcm_prepare": ([pcm], c_int),
            "snd_pcm_start": ([pcm], c_int),
            "snd_pcm_writei": ([pcm, vp, ctypes.c_ulong], ctypes.c_long),
            "snd_pcm_wait": ([pcm, c_int], c_int),
            "snd_pcm_recover": ([pcm, c_int, c_int], c_int),
            "snd_pcm_state": ([pcm], c_int),
            "snd_pcm_delay": ([pcm, ctypes.POINTER(ctypes.c_long)], c_int),
            "snd_pcm_drop": ([pcm], c_int),
            "snd_pcm_drain": ([pcm], c_int),
            "snd_pcm_nonblock": ([pcm, c_int], c_int),
            "snd_pcm_close": ([pcm], c_int),
            "snd_strerror": ([c_int], ctypes.c_char_p),
        }
        for name, (argtypes, restype) in signatures.items():
            func = getattr(lib, name)
            func.argtypes, func.restype = argtypes, restype
        # libasound prints its own errors to stderr ("cannot find card '0'", at every retry
        # on a terminal without a speaker). Our AudioError already says it, once, in the
        # structured log: silence the library's copy.
        lib.snd_lib_error_set_handler(_SILENT_ALSA_ERRORS)
        _lib = lib
    return _lib


class AlsaBackend:
    """One ALSA PCM, kept open. Used by one thread at a time (ALSA handles are not
    thread-safe): the player's worker thread."""

    def __init__(self, device: str = "default") -> None:
        self.device = device
        self._lib = _libasound()
        self._pcm: ctypes.c_void_p | None = None
        self._format: tuple[int, int] | None = None

    def open(self, rate: int, channels: int) -> None:
        self.close()
        handle = ctypes.c_void_p()
        # Non-blocking open: a device held by another program answers EBUSY at once
        # instead of waiting for it to be released.
        self._check(self._lib.snd_pcm_open(ctypes.byref(handle), self.device.encode(),
                                           _STREAM_PLAYBACK, _MODE_NONBLOCK), N_("open it"))
        self._pcm = handle
        try:
            self._check(self._lib.snd_pcm_set_params(
                handle, _FORMAT_S16_LE, _ACCESS_RW_INTERLEAVED, channels, rate, 1, LATENCY_US),
                N_("set its format"))
        except AudioError:
            self.close()
            raise
        self._format = (rate, channels)

    def play(self, clip: Clip, interrupted: Callable[[], bool],
             on_start: Callable[[float], None]) -> None:
        if self._pcm is None or self._format != (clip.rate, clip.channels):
            self.open(clip.rate, clip.channels)
        try:
            self._play(clip, interrupted, on_start)
        except AudioError:
            self.close()  # the next sound reopens: a replugged USB speaker comes back
            raise

    def close(self) -> None:
        if self._pcm is not None:
            self._lib.snd_pcm_close(self._pcm)
            self._pcm = None
            self._format = None

    def _play(self, clip: Clip, interrupted: Callable[[], bool],
              on_start: Callable[[float], None]) -> None:
        # The PCM is left prepared after each sound, so the first call here is the write
        # itself: every ctypes call gives up the GIL, and getting it back can cost a busy
        # caller's full switch interval (5 ms).
        lib, pcm = self._lib, self._pcm
        frame_bytes = 2 * clip.channels
        base = ctypes.cast(ctypes.c_char_p(clip.pcm), ctypes.c_void_p).value or 0
        done, started = 0, False
        while done < clip.frames:
            if interrupted():
                lib.snd_pcm_drop(pcm)
                lib.snd_pcm_prepare(pcm)
                return
            count = min(CHUNK_FRAMES, clip.frames - done)
            before = time.monotonic()
            written = lib.snd_pcm_writei(pcm, base + done * frame_bytes, count)
            if written == -errno.EAGAIN:  # buffer full: wait for room (or the interrupt)
                lib.snd_pcm_wait(pcm, POLL_MS)
                continue
            if written < 0:  # an underrun on a loaded Pi, or not prepared: recover, go on
                if lib.snd_pcm_recover(pcm, written, 1) < 0:
                    self._check(lib.snd_pcm_prepare(pcm), N_("write to it"))
                continue
            done += written
            if not started:
                started = True
                on_start(before)
        if lib.snd_pcm_state(pcm) == _STATE_PREPARED:  # shorter than the start threshold
            self._check(lib.snd_pcm_start(pcm), N_("start it"))
        self._wait_played(interrupted, clip.rate)

    def _wait_played(self, interrupted: Callable[[], bool], rate: int) -> None:
        """Wait until the device has played the buffer out, or stop it on an interrupt."""
        lib, pcm = self._lib, self._pcm
        delay = ctypes.c_long()
        while lib.snd_pcm_state(pcm) == _STATE_RUNNING:
            if lib.snd_pcm_delay(pcm, ctypes.byref(delay)) < 0 or delay.value <= 0:
                break
            time.sleep(min(POLL_MS / 1000, delay.value / rate))
            if interrupted():
                lib.snd_pcm_drop(pcm)
                lib.snd_pcm_prepare(pcm)
                return
        # Drain what is left (nothing, or a few frames): plugins such as `file` only hand
        # their data on at drain. Blocking mode, or drain would answer EAGAIN.
        lib.snd_pcm_nonblock(pcm, 0)
        lib.snd_pcm_drain(pcm)
        lib.snd_pcm_nonblock(pcm, 1)
        lib.snd_pcm_prepare(pcm)

    def _check(self, result: int, what: str) -> None:
        if result < 0:
            message = (self._lib.snd_strerror(result) or b"?").decode(errors="replace")
            # ALSA's codes are -errno (its own start at 500000: said by number).
            if -result in errno.errorcode:  # os_words keeps ALSA's text in the log
                why = plain.os_words(OSError(-result, message, self.device))
            else:
                plain.keep(message, device=self.device)
                why = _("ALSA error {code}").format(code=result)
            raise AudioError(_("ALSA device {device!r}: cannot {what}: {why}").format(
                device=self.device, what=_(what), why=why))
