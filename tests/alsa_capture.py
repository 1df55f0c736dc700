"""Real ALSA for the sound tests, without a sound card.

ALSA reads its configuration once per process, at first use, from ALSA_CONFIG_PATH when
that is set. So each test writes a config here and runs the player in a child process
(`python tests/alsa_capture.py ...`, the `main` below) with that variable set:

- `file` config: the default PCM is ALSA's `file` plugin in front of the `null` plugin;
  every sample the player hands to ALSA lands, raw, in a file (or a FIFO) we read back.
- `missing` config: the default PCM is card 0, which a machine without audio hardware
  does not have: exactly what the player sees on a Pi whose speaker is gone.

The configs define only the PCMs used: the plugins `file`, `null` and `hw` are built into
libasound, and leaving out /usr/share/alsa/alsa.conf keeps the machine's own asound.conf
or ~/.asoundrc from changing what the test sees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def file_config(path: Path, capture: Path) -> Path:
    path.write_text(
        "pcm.!default {\n"
        "    type file\n"
        "    slave.pcm { type null }\n"
        f'    file "{capture}"\n'
        '    format "raw"\n'
        "}\n")
    return path


def missing_card_config(path: Path) -> Path:
    path.write_text("pcm.!default {\n    type hw\n    card 0\n}\n")
    return path


def run_child(config: Path, *args: str, timeout: float = 30) -> dict:
    """Run `main` with ALSA_CONFIG_PATH=config; return the JSON it prints."""
    env = dict(os.environ, ALSA_CONFIG_PATH=str(config))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Child: build the player from settings, play the sounds given, report as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="alsa")
    parser.add_argument("--volume", type=float, default=1.0)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between the plays")
    parser.add_argument("--no-wait", action="store_true", help="exit without flushing")
    parser.add_argument("sounds", nargs="*")
    args = parser.parse_args(argv)

    from reader.config import SoundSettings
    from reader.sound import SoundPlayer

    settings = SoundSettings(volume=args.volume, backend=args.backend)
    t0 = time.monotonic()
    player = SoundPlayer.from_settings(settings)
    report: dict = {"init_s": time.monotonic() - t0, "state_at_start": player.state,
                    "play_s": [], "started": []}
    for i, name in enumerate(args.sounds):
        if i and args.gap:
            time.sleep(args.gap)
        before = time.monotonic()
        player.play(name)
        report["play_s"].append(time.monotonic() - before)
        if not args.no_wait:
            # record which sound reached the device, and when, before the next replaces it
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and (player.last_started or ("",))[0] != name:
                time.sleep(0.001)
            started = player.last_started
            report["started"].append(
                [started[0], started[1] - before] if started and started[0] == name else None)
    report["idle"] = args.no_wait or player.flush(10)
    report["state"] = player.state
    if not args.no_wait:
        player.close()
    print(json.dumps(report))
    sys.stdout.flush()
    if args.no_wait:
        os._exit(0)  # the worker may be stuck in a device call: do not wait for it
    return 0


if __name__ == "__main__":
    sys.exit(main())
