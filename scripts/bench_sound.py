#!/usr/bin/env python3
"""Time from verdict to sound start: `SoundPlayer.play()` called -> first samples in ALSA.

Runs through real ALSA without a sound card: the default PCM is the `file` plugin in front
of `null` (tests/alsa_capture.py explains the trick). Two callers are measured:
- idle: the caller blocks after play(), as the tap loop does in the reader's I/O while the
  card is removed; this is the figure held against the goal;
- busy: the caller keeps running pure Python for 30 ms after play(), the worst case: the
  worker must then win the GIL, which CPython hands over only every
  sys.getswitchinterval() (5 ms), later still when other processes load the CPUs.

    uv run python scripts/bench_sound.py [--plays 100] [--backend alsa|simpleaudio]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MS = 20.0


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1


def measure(plays: int, backend: str, busy: bool) -> tuple[list[float], list[float]]:
    from reader.config import SoundSettings
    from reader.sound import SoundPlayer

    start_ms, call_us = [], []
    with SoundPlayer.from_settings(SoundSettings(backend=backend)) as player:
        if player.state != "ok":
            raise SystemExit(f"audio device state {player.state}: cannot measure")
        for _ in range(plays):
            asked = time.monotonic()
            player.play("accepted")
            call_us.append((time.monotonic() - asked) * 1e6)
            if busy:
                _busy(0.03)
            player.flush(5)
            started = player.last_started
            assert started is not None and started[1] >= asked
            start_ms.append((started[1] - asked) * 1000)
    return start_ms, call_us


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=100)
    parser.add_argument("--backend", default="alsa", choices=["alsa", "simpleaudio"])
    args = parser.parse_args()
    if "SUKUMO_BENCH_CHILD" not in os.environ:
        # ALSA reads its config once per process: run ourselves again with ours.
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "asound.conf"
            conf.write_text('pcm.!default { type file slave.pcm { type null } '
                            f'file "{Path(tmp) / "captured.raw"}" format "raw" }}\n')
            env = dict(os.environ, ALSA_CONFIG_PATH=str(conf), SUKUMO_BENCH_CHILD="1")
            return subprocess.run([sys.executable, *sys.argv], env=env).returncode
    print(f"verdict -> sound start, backend {args.backend}, {args.plays} plays, "
          "ALSA file+null device")
    idle_p99 = 0.0
    for busy in (False, True):
        start_ms, call_us = measure(args.plays, args.backend, busy)
        idle_p99 = idle_p99 or p99(start_ms)
        print(f"  caller {'busy' if busy else 'idle'}: start median "
              f"{statistics.median(start_ms):.3f} ms, p99 {p99(start_ms):.3f} ms, "
              f"max {max(start_ms):.3f} ms; play() call median "
              f"{statistics.median(call_us):.1f} us, p99 {p99(call_us):.1f} us")
    met = idle_p99 <= GOAL_MS
    print(f"goal p99 <= {GOAL_MS:.0f} ms (idle caller): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
