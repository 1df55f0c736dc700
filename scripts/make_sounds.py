#!/usr/bin/env python3
"""Generate the terminal's sounds (sounds/*.wav) from the note lists below.

Standard library only and no randomness, so the committed WAVs can be checked against a
fresh run byte for byte (tests/test_sound.py does). Format: 16-bit signed mono PCM at
44100 Hz, the rate every ALSA device on a Pi (headphone jack, HDMI, USB speakers) plays
without resampling.

Each sound differs from the others in pitch register *and* rhythm, so a citizen or a
nursery teacher tells them apart without looking at the screen:

    accepted   six bright bell notes on "su-ku-mo-a-i-dii", the last one long and rising
    rejected   two low buzzy notes, falling: short then long (JIS S 0013 reception invalid)
    duplicate  two quick identical mid notes ("already recorded")
    arrival    rising three-note arpeggio, even steps
    departure  falling three-note arpeggio, long-short-long
    coupon     a quick high trill that ends on a sparkle
    error      a low hum three times, evenly (JIS S 0013 strong caution): device or storage

    python scripts/make_sounds.py            # writes sounds/*.wav next to this script
    python scripts/make_sounds.py --out DIR  # writes elsewhere (the reproducibility test)
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

RATE = 44100
PEAK = 0.70  # of full scale: loud enough on a small speaker, headroom for the volume setting
ATTACK_S = 0.006  # a few ms of fade-in: a note that starts at full level clicks
RELEASE_S = 0.025  # and the same at the end of each note

# Timbres: relative amplitudes of harmonics 1, 2, 3, ...
BELL = (1.0, 0.35, 0.12, 0.05)  # bright but round: the chime, arpeggios, duplicate
GLASS = (1.0, 0.0, 0.25, 0.0, 0.1)  # thin and high: the coupon sparkle
BUZZ = (1.0, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14, 0.12)  # sawtooth-like: "no"
HUM = (1.0, 0.0, 0.33, 0.0, 0.2)  # square-ish and steady: "something is broken"


@dataclass(frozen=True)
class Note:
    pitch: str  # scientific pitch name, e.g. "C#5"
    start: float  # seconds from the start of the sound
    length: float  # seconds, release included
    timbre: tuple[float, ...] = BELL
    decay: float = 3.0  # exponential decay per second (0 = sustained)
    glide_to: str | None = None  # pitch reached at the end of the note
    glide_from: float = 0.6  # fraction of the note after which the glide starts
    level: float = 1.0


_SEMITONES = {"C": -9, "D": -7, "E": -5, "F": -4, "G": -2, "A": 0, "B": 2}


def frequency(pitch: str) -> float:
    """Equal temperament, A4 = 440 Hz."""
    name, rest = pitch[0], pitch[1:]
    shift = 0
    while rest and rest[0] in "#b":
        shift += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    semitones = _SEMITONES[name] + shift + 12 * (int(rest) - 4)
    return 440.0 * 2.0 ** (semitones / 12)


def _seq(pitches: list[str], starts: list[float], lengths: list[float],
         timbre: tuple[float, ...] = BELL, decay: float = 3.0, level: float = 1.0) -> list[Note]:
    return [Note(p, s, n, timbre, decay, level=level)
            for p, s, n in zip(pitches, starts, lengths, strict=True)]


# su   ku   mo  | a    i  | dii♪ — "sukumo" is three quick notes, a breath, then "ID".
ACCEPTED = [
    Note("E5", 0.00, 0.16),
    Note("G5", 0.11, 0.16),
    Note("C6", 0.22, 0.22),
    Note("A5", 0.42, 0.16),
    Note("B5", 0.53, 0.16),
    Note("D6", 0.64, 0.68, decay=1.6, glide_to="E6", glide_from=0.55),
]

SOUNDS: dict[str, list[Note]] = {
    "accepted": ACCEPTED,
    # JIS S 0013's "reception invalid" pattern (受付無効音): a short then a long signal,
    # 100 ms on, 100 ms off, 500 ms on ("pi, piii"); falling and buzzy, so it reads "no".
    "rejected": [
        Note("A3", 0.00, 0.10, BUZZ, decay=1.0, level=0.8),
        Note("F3", 0.20, 0.50, BUZZ, decay=1.0, level=0.8),
    ],
    "duplicate": [
        Note("A4", 0.00, 0.09, BELL, decay=4.0),
        Note("A4", 0.14, 0.09, BELL, decay=4.0),
    ],
    "arrival": _seq(["C5", "E5", "G5"], [0.00, 0.13, 0.26], [0.15, 0.15, 0.40], decay=2.5),
    "departure": _seq(["C6", "A5", "F5"], [0.00, 0.28, 0.40], [0.30, 0.14, 0.45], decay=2.5),
    "coupon": [
        *_seq(["E6", "G6"] * 4, [i * 0.045 for i in range(8)], [0.06] * 8, timbre=GLASS,
              decay=6.0, level=0.6),
        Note("C7", 0.36, 0.30, GLASS, decay=5.0, level=0.7),
    ],
    # JIS S 0013's "strong caution" pattern (強注意音): one signal repeated at an even
    # rate, 300 ms on / 100 ms off; three times, so the chime of the next tap is not
    # drowned. (It was one steady 0.9 s hum: a single signal reads as "done", not "alert".)
    "error": [Note("D3", start, 0.30, HUM, decay=0.0, level=0.9) for start in (0.0, 0.4, 0.8)],
}


def _envelope(t: float, note: Note) -> float:
    attack = min(1.0, t / ATTACK_S)
    release = min(1.0, (note.length - t) / RELEASE_S)
    return attack * release * math.exp(-note.decay * t) * note.level


def render_note(note: Note, out: list[float]) -> None:
    """Add `note` into `out` (float samples). The phase is integrated sample by sample so
    a glide bends the pitch without a jump."""
    f0 = frequency(note.pitch)
    f1 = frequency(note.glide_to) if note.glide_to else f0
    first = round(note.start * RATE)
    count = round(note.length * RATE)
    glide_start = note.glide_from * count
    phase = 0.0
    for i in range(count):
        if i > glide_start:
            x = (i - glide_start) / (count - glide_start)
            f = f0 + (f1 - f0) * (0.5 - 0.5 * math.cos(math.pi * x))
        else:
            f = f0
        phase += 2.0 * math.pi * f / RATE
        sample = 0.0
        for h, amp in enumerate(note.timbre, start=1):
            if amp and h * f < RATE / 2:  # never above Nyquist: no aliasing whistles
                sample += amp * math.sin(h * phase)
        out[first + i] += sample * _envelope(i / RATE, note)


def render(notes: list[Note]) -> bytes:
    """16-bit little-endian PCM of the notes, normalised to PEAK."""
    end = max(round(n.start * RATE) + round(n.length * RATE) for n in notes)
    buf = [0.0] * end
    for note in notes:
        render_note(note, buf)
    scale = PEAK * 32767 / max(abs(s) for s in buf)
    return struct.pack(f"<{end}h", *(round(s * scale) for s in buf))


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent
                        / "sounds", help="directory for the WAV files (default: sounds/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, notes in SOUNDS.items():
        pcm = render(notes)
        write_wav(args.out / f"{name}.wav", pcm)
        print(f"{name:10} {len(pcm) / 2 / RATE:5.2f} s  {args.out / (name + '.wav')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
