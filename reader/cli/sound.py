"""`sukumo-reader sound test [NAME]`: play one sound, or all in turn, to check the speaker.

Uses the same settings, files and backend as the daemon, so what the technician hears is
what citizens will hear. Exit 3 when the audio device is missing.
"""

from __future__ import annotations

import argparse
import sys
import time

from reader.cli import EXIT_ENVIRONMENT, EXIT_OK
from reader.config import load_settings
from reader.sound import SOUND_NAMES, SoundPlayer
from reader.system import codes
from reader.system.i18n import _
from reader.terminal.lock import holder

PAUSE_S = 0.5  # between two sounds, so each is heard on its own
START_WAIT_S = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sound", help=_("check the speaker: play the terminal's sounds"))
    actions = parser.add_subparsers(dest="sound_action", metavar="ACTION", required=True)
    test = actions.add_parser("test", help=_("play one sound, or all of them in turn"))
    test.add_argument("name", nargs="?", choices=SOUND_NAMES,
                      help=_("the sound to play (default: all)"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    sound = settings.sound
    if not sound.enabled:
        print(_("sound is disabled in the settings ([sound] enabled = false); testing anyway"))
        sound = sound.model_copy(update={"enabled": True})
    names = [args.name] if args.name else list(SOUND_NAMES)
    pid = holder(settings.paths.state_dir)
    if pid is not None:  # its chimes may play over these, or hold the device
        print(_("warning: the terminal daemon is running (pid {pid}): its sounds may play "
                "over these, and a device it holds may refuse them").format(
                    pid=pid or "?"), file=sys.stderr)
    with SoundPlayer.from_settings(sound) as player:
        print(_("backend {backend}, device {device!r}, volume {volume}").format(
            backend=sound.backend, device=sound.device, volume=sound.volume))
        if player.state != "ok" or not player.clips:
            print(_("audio missing: {why}").format(
                why=player.problem or _("no sound files")))
            return EXIT_ENVIRONMENT
        return play_in_turn(player, names)


def play_in_turn(player: SoundPlayer, names: list[str]) -> int:
    """Play each sound to its end; EXIT_ENVIRONMENT as soon as one does not start."""
    for i, name in enumerate(names):
        if i:
            time.sleep(PAUSE_S)
        clip = player.clips[name]
        # The sound's name is an id to type (`sound test NAME`): quoted as typed.
        print(_("playing {name} ({seconds:.2f} s)").format(name=f"`{name}`",
                                                          seconds=clip.duration_s), flush=True)
        asked = time.monotonic()
        player.play(name)
        if not player.flush(clip.duration_s + START_WAIT_S):
            print(_("{name}: the device did not finish playing it").format(name=f"`{name}`"),
                  file=sys.stderr)
            return EXIT_ENVIRONMENT
        started = player.last_started
        if started is None or started[0] != name or started[1] < asked:
            print(_("{name}: the device did not take it (state {state})").format(
                name=f"`{name}`", state=codes.said("audio", player.state)), file=sys.stderr)
            return EXIT_ENVIRONMENT
    return EXIT_OK
