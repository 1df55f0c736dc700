"""Sound device backends, in one table, imported lazily.

A backend does the device work of one sound at a time, on the player's worker thread
(never on the tap loop). Both backends here talk to ALSA's `default` PCM (or the one
named in `[sound] device`):

- `alsa`: libasound through ctypes. ctypes lets go of the GIL in every call, so a device
  that blocks (busy, hung, slow) stalls only the worker thread; the PCM stays open
  between sounds, so a sound starts with one write.
- `simpleaudio`: the simpleaudio package. It opens the device for every sound and holds
  the GIL while it does, so a device that blocks in open freezes the whole daemon, tap
  loop included; kept as a fallback for devices the ctypes backend mishandles.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from reader.errors import AudioError
from reader.sound.clips import Clip
from reader.system.i18n import _

BACKENDS: dict[str, tuple[str, str]] = {
    "alsa": ("reader.sound.alsa", "AlsaBackend"),
    "simpleaudio": ("reader.sound.simpleaudio_backend", "SimpleaudioBackend"),
}


class SoundBackend(Protocol):
    """What the player needs from a device. Every method may block; none is ever called
    from the tap loop. Device failures raise AudioError, and the player then calls `open`
    again before the next sound."""

    def open(self, rate: int, channels: int) -> None:
        """Get the device ready for clips of this format; AudioError when it is missing."""

    def play(self, clip: Clip, interrupted: Callable[[], bool],
             on_start: Callable[[float], None]) -> None:
        """Play `clip` to its end or until `interrupted()` turns true (then stop at once;
        it is a cheap attribute check, meant to be polled every few ms).
        Call `on_start(t)` once the first samples are in the device, with t the
        time.monotonic() at which they were handed over."""

    def close(self) -> None:
        """Release the device; never raises."""


def create_backend(name: str, device: str = "default") -> SoundBackend:
    """Build the backend `name`; AudioError when it is unknown or its library is missing."""
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        raise AudioError(_("unknown sound backend {name!r}; known: {known}").format(
            name=name, known=", ".join(BACKENDS))) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AudioError(_("sound backend {name!r} is not available here: {why}").format(
            name=name, why=exc)) from exc
    backend: SoundBackend = getattr(module, class_name)(device)
    return backend
