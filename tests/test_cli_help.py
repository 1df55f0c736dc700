"""Every command and every argument of `sukumo-reader` explains itself in --help."""

from __future__ import annotations

import argparse

from reader.cli import build_parser


def _actions(parser: argparse.ArgumentParser, path: str = "sukumo-reader"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", "(the command itself)", helps.get(name)
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_command_and_argument_has_help_text() -> None:
    missing = [f"{where}: {what}" for where, what, text in _actions(build_parser())
               if not text or (text == argparse.SUPPRESS and what != "--settings-json")]
    assert missing == [], "arguments without help text:\n" + "\n".join(missing)


def test_tap_without_a_reader_says_so_and_what_to_do(tmp_path) -> None:
    from daemon_env import Deployment, run_cli

    dep = Deployment(tmp_path)
    dep.write_config(reader_extra="")
    config = dep.config.read_text().replace('transport = "virtual"',
                                            'transport = "nfcpy"\nnfc_path = "usb:054c:06c1"')
    dep.config.write_text(config.replace(f'virtual_feed = "{dep.feed}"', ""))
    done = run_cli("--config", str(dep.config), "tap", "--timeout", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no nfcpy reader was found" in done.stdout and "sukumo-reader readers" in done.stdout
    assert "no card was tapped" not in done.stdout


def test_the_demo_without_an_audio_device_claims_no_sound(tmp_path) -> None:
    from daemon_env import run_cli

    silent = tmp_path / "asound.conf"
    silent.write_text("")  # no PCM at all: the player reports its device missing
    done = run_cli("demo", "--offline", "--pace", "0", "--dir", str(tmp_path / "demo"),
                   env={"ALSA_CONFIG_PATH": str(silent)}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Audio: no sound device" in done.stdout
    assert "sound ♪" not in done.stdout and "(silent: no audio device" in done.stdout
