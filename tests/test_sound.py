"""The sounds a citizen hears, checked through real ALSA (see tests/alsa_capture.py).

No sound card is needed: ALSA's `file` plugin captures the exact samples the player hands
to the device, a FIFO read slowly stands in for a device that plays in real time, a FIFO
nobody reads for one that hangs, and a config naming card 0 for a machine without audio.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
import wave
from array import array
from pathlib import Path

import pytest
from alsa_capture import REPO, file_config, missing_card_config, run_child

from reader.config import SoundSettings
from reader.sound import SOUND_NAMES, SoundPlayer, find_sound_dir, load_clips

SOUNDS = REPO / "sounds"
BACKENDS = ["alsa", "simpleaudio"]
BYTES_PER_S = 44100 * 2
PLAY_BOUND_S = 0.005  # generous: benchmarks measure the real figure (scripts/bench_sound.py)


def wav_samples(name: str, volume: float = 1.0) -> bytes:
    """The samples of sounds/NAME.wav as the device must receive them: round(s * volume)."""
    with wave.open(str(SOUNDS / f"{name}.wav"), "rb") as w:
        samples = array("h", w.readframes(w.getnframes()))
    return array("h", (round(s * volume) for s in samples)).tobytes()


# --- the WAV files ---------------------------------------------------------------------

def test_committed_wavs_are_what_the_script_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_sounds.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, timeout=60)
    for name in SOUND_NAMES:
        fresh, committed = tmp_path / f"{name}.wav", SOUNDS / f"{name}.wav"
        assert fresh.read_bytes() == committed.read_bytes(), (
            f"sounds/{name}.wav differs from scripts/make_sounds.py's output: regenerate it")


def test_every_sound_is_16bit_mono_44k_and_the_chime_is_short() -> None:
    for name in SOUND_NAMES:
        with wave.open(str(SOUNDS / f"{name}.wav"), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 44100)
            seconds = w.getnframes() / w.getframerate()
        assert 0.1 < seconds < 1.5, name
    with wave.open(str(SOUNDS / "accepted.wav"), "rb") as w:
        assert w.getnframes() / w.getframerate() < 1.5


def test_sounds_differ_in_pitch_and_in_rhythm() -> None:
    """Told apart without looking: no two sounds share their notes or their rhythm."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from make_sounds import SOUNDS as NOTE_LISTS
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert set(NOTE_LISTS) == set(SOUND_NAMES)
    assert len(NOTE_LISTS["accepted"]) == 6  # su-ku-mo-a-i-dii
    pitches = {name: tuple(n.pitch for n in notes) for name, notes in NOTE_LISTS.items()}
    rhythms = {name: tuple((n.start, n.length) for n in notes)
               for name, notes in NOTE_LISTS.items()}
    for a in SOUND_NAMES:
        for b in SOUND_NAMES:
            if a < b:
                assert pitches[a] != pitches[b], (a, b)
                assert rhythms[a] != rhythms[b], (a, b)


# --- through real ALSA -----------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sound", ["accepted", "rejected"])
def test_the_device_receives_exactly_the_sound_at_the_set_volume(
        tmp_path: Path, backend: str, sound: str) -> None:
    capture = tmp_path / "captured.raw"
    config = file_config(tmp_path / "asound.conf", capture)
    report = run_child(config, "--backend", backend, "--volume", "0.5", sound)
    assert report["state"] == "ok" and report["idle"]
    assert report["started"][0][0] == sound
    captured = capture.read_bytes()
    assert captured == wav_samples(sound, 0.5)
    other = "rejected" if sound == "accepted" else "accepted"
    assert captured != wav_samples(other, 0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_sound_replaces_the_one_playing(tmp_path: Path, backend: str) -> None:
    """A FIFO read at the sound's own pace plays the part of a real-time device."""
    fifo = tmp_path / "device.fifo"
    os.mkfifo(fifo)
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader_fd, 1031, 4096)  # F_SETPIPE_SZ: the pipe holds ~50 ms, like a device
    captured = bytearray()
    stop = threading.Event()

    def read_in_real_time() -> None:
        first_byte: float | None = None  # the "device" starts playing with the first sample
        while not stop.is_set():
            now = time.monotonic()
            budget = 2 if first_byte is None else (
                int((now - first_byte) * BYTES_PER_S) - len(captured))
            if budget > 0:
                try:
                    data = os.read(reader_fd, min(budget, 4096))
                    if data:
                        captured.extend(data)
                        first_byte = first_byte or now
                except BlockingIOError:
                    pass
            time.sleep(0.005)

    thread = threading.Thread(target=read_in_real_time, daemon=True)
    thread.start()
    try:
        report = run_child(file_config(tmp_path / "asound.conf", fifo),
                           "--backend", backend, "--gap", "0.3", "accepted", "rejected")
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
        os.close(reader_fd)
    accepted, rejected = wav_samples("accepted"), wav_samples("rejected")
    assert [s[0] for s in report["started"]] == ["accepted", "rejected"]
    assert max(report["play_s"]) < PLAY_BOUND_S, report["play_s"]
    assert captured.endswith(rejected), "the new sound is played whole"
    lead_in = captured.find(accepted[:64])  # simpleaudio probes the device with silence
    assert lead_in >= 0 and not any(captured[:lead_in])
    cut = len(captured) - len(rejected) - lead_in
    assert captured[lead_in:lead_in + cut] == accepted[:cut], "first the start of the chime"
    print(f"chime cut after {cut / BYTES_PER_S:.2f} s of {len(accepted) / BYTES_PER_S:.2f} s")
    assert cut < len(accepted) * 0.6, f"the chime was not cut short ({cut} of {len(accepted)})"


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_audio_device_taps_go_on(tmp_path: Path, backend: str) -> None:
    report = run_child(missing_card_config(tmp_path / "asound.conf"), "--backend", backend,
                       "--no-wait",
                       "accepted", "rejected", "error")
    assert report["state_at_start"] == "missing" and report["state"] == "missing"
    assert max(report["play_s"]) < PLAY_BOUND_S, report["play_s"]


def test_a_hanging_device_never_delays_the_caller(tmp_path: Path) -> None:
    """A FIFO that nobody reads: ALSA's open blocks forever, as a wedged driver does."""
    fifo = tmp_path / "device.fifo"
    os.mkfifo(fifo)
    report = run_child(file_config(tmp_path / "asound.conf", fifo), "--no-wait",
                       "accepted", "rejected", "coupon")
    assert report["init_s"] < 3, "start-up gives up waiting for the device"
    assert report["state"] == "missing"
    assert max(report["play_s"]) < PLAY_BOUND_S, report["play_s"]


# --- in process: no device needed ------------------------------------------------------

def test_unknown_name_is_logged_and_nothing_plays(caplog: pytest.LogCaptureFixture) -> None:
    with SoundPlayer.from_settings(SoundSettings(enabled=False)) as player:
        assert player.state == "disabled"
        player.play("fanfare")
        player.play("accepted")  # disabled: silently nothing
        assert player.last_started is None
    assert any(r.getMessage() == "unknown sound" for r in caplog.records)


def test_volume_is_applied_once_at_load() -> None:
    quiet = load_clips(None, 0.25)
    assert set(quiet) == set(SOUND_NAMES)
    assert quiet["coupon"].pcm == wav_samples("coupon", 0.25)
    assert load_clips(None, 1.0)["coupon"].pcm == wav_samples("coupon")


def test_sounds_are_found_beside_the_package_or_where_settings_say(tmp_path: Path) -> None:
    assert find_sound_dir() == SOUNDS
    assert find_sound_dir(tmp_path) is None  # an explicit directory is the only one tried
    with SoundPlayer.from_settings(SoundSettings(directory=tmp_path)) as player:
        assert player.state == "missing"  # no files: silent, but the taps go on
        player.play("accepted")
        assert player.last_started is None


# --- sukumo-reader sound test ----------------------------------------------------------

def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ALSA_CONFIG_PATH=str(config), SUKUMO_READER_SOUND__VOLUME="0.5")
    return subprocess.run([sys.executable, "-c", "import sys; from reader.cli import main; "
                           "sys.exit(main())", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_sound_test_plays_the_named_sound(tmp_path: Path) -> None:
    capture = tmp_path / "captured.raw"
    proc = run_cli(file_config(tmp_path / "asound.conf", capture), "sound", "test", "duplicate")
    assert proc.returncode == 0, proc.stderr
    assert "playing `duplicate`" in proc.stdout
    assert capture.read_bytes() == wav_samples("duplicate", 0.5)


def test_cli_sound_test_without_a_device_exits_3(tmp_path: Path) -> None:
    proc = run_cli(missing_card_config(tmp_path / "asound.conf"), "sound", "test")
    assert proc.returncode == 3
    assert "audio missing" in proc.stdout
