"""The terminal's sounds as PCM buffers in memory, read once at start-up.

A tap must never wait for the SD card, so every WAV is read and volume-scaled here, once;
playing a sound afterwards only hands a ready buffer to the device.
"""

from __future__ import annotations

import logging
import sys
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

import reader
from reader.modes.base import Sound
from reader.system.logs import fields

log = logging.getLogger(__name__)

# The verdicts and states that have a sound (scripts/make_sounds.py makes one WAV each).
SOUND_NAMES = tuple(str(s) for s in Sound)


@dataclass(frozen=True)
class Clip:
    """One sound, ready for the device: 16-bit signed little-endian PCM, volume applied."""

    name: str
    pcm: bytes
    rate: int
    channels: int

    @property
    def frames(self) -> int:
        return len(self.pcm) // (2 * self.channels)

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate


def sound_dir_candidates(directory: Path | None = None) -> list[Path]:
    """Where the sounds are looked for, first match wins.

    1. `[sound] directory` when set (nothing else is tried then: a wrong path must show);
    2. `sounds/` beside the `reader` package: a source checkout or an editable install;
    3. `<sys.prefix>/share/sukumo-reader/sounds`: a wheel installed into a venv;
    4. `/opt/sukumo-reader/sounds`: the Pi image's install location.
    """
    if directory is not None:
        return [Path(directory)]
    return [
        Path(reader.__file__).resolve().parent.parent / "sounds",
        Path(sys.prefix) / "share" / "sukumo-reader" / "sounds",
        Path("/opt/sukumo-reader/sounds"),
    ]


def find_sound_dir(directory: Path | None = None) -> Path | None:
    """The first candidate that holds accepted.wav, or None."""
    for candidate in sound_dir_candidates(directory):
        if (candidate / "accepted.wav").is_file():
            return candidate
    return None


def scale_pcm(pcm: bytes, volume: float) -> bytes:
    """Linear gain on 16-bit samples: round(sample * volume), so 1.0 leaves them as they are."""
    if volume == 1.0:
        return pcm
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    scaled = array("h", (round(s * volume) for s in samples))
    if sys.byteorder == "big":
        scaled.byteswap()
    return scaled.tobytes()


def read_clip(path: Path, volume: float = 1.0) -> Clip:
    """Read one WAV; raise ValueError when it is not 16-bit PCM (the only format we make)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit")
        pcm = w.readframes(w.getnframes())
        return Clip(path.stem, scale_pcm(pcm, volume), w.getframerate(), w.getnchannels())


def load_clips(directory: Path | None, volume: float) -> dict[str, Clip]:
    """Every known sound that can be read; each one missing is logged, never raised:
    a terminal without its sounds still records taps."""
    found = find_sound_dir(directory)
    if found is None:
        tried = ", ".join(str(p) for p in sound_dir_candidates(directory))
        log.error("no sound files found", **fields(tried=tried))
        return {}
    clips: dict[str, Clip] = {}
    for name in SOUND_NAMES:
        path = found / f"{name}.wav"
        try:
            clips[name] = read_clip(path, volume)
        except (OSError, EOFError, ValueError, wave.Error) as exc:
            log.error("sound file unreadable", **fields(sound=name, path=str(path), error=str(exc)))
    return clips
