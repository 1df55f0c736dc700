"""The terminal's sounds: clips read once, a player that never delays a tap, and the
device backends behind it (see player.py for the theory of operation)."""

from reader.sound.backends import BACKENDS, SoundBackend, create_backend
from reader.sound.clips import SOUND_NAMES, Clip, find_sound_dir, load_clips, read_clip, scale_pcm
from reader.sound.player import SoundPlayer, State

__all__ = [
    "BACKENDS",
    "SOUND_NAMES",
    "Clip",
    "SoundBackend",
    "SoundPlayer",
    "State",
    "create_backend",
    "find_sound_dir",
    "load_clips",
    "read_clip",
    "scale_pcm",
]
