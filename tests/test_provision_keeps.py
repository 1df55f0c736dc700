"""Issue 21, item 6: re-running `provision` keeps what the terminal has. The bracket of
each question offers the configured value (Enter keeps it: the config held `virtual`, the
offer was `[pcsc]`, Enter wrote `pcsc`); the virtual reader, which reads no card, is
refused outside `--dev`; `--virtual-feed` sets its feed directory (a real `sukumo-reader
provision` in a pseudo-terminal where it asks)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from daemon_env import language_env, run_cli
from test_provision_messages import ROOT, answered


def _first(tmp: Path, *extra: str) -> Path:
    done = run_cli("provision", "--config-dir", str(tmp / "etc"), "--state-dir",
                   str(tmp / "state"), "--no-chown", "--terminal-id", "t-0001", "--muni",
                   "392081", "--facility", "hall", "--mode", "event", "--root-key", ROOT,
                   "--broker", "", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "etc" / "reader.toml"


def _again(tmp: Path, *extra: str) -> list[str]:
    return ["provision", "--config-dir", str(tmp / "etc"), "--state-dir", str(tmp / "state"),
            "--no-chown", *extra]


def test_enter_keeps_every_configured_value_including_the_virtual_reader(tmp_path: Path) -> None:
    feed = tmp_path / "feed"
    config = _first(tmp_path, "--transport", "virtual", "--dev", "--virtual-feed", str(feed))
    before = tomllib.loads(config.read_text())
    assert before["reader"] == {"transport": "virtual", "virtual_feed": str(feed)}
    code, screen = answered(_again(tmp_path, "--dev"), [""] * 7)
    assert code == 0, screen
    for offer in ("[t-0001]", "[392081]", "[hall]", "[event]", "[virtual]", f"[{ROOT}]"):
        assert offer in screen, (offer, screen)
    assert tomllib.loads(config.read_text()) == before  # Enter changed nothing


def test_the_virtual_reader_is_refused_outside_dev(tmp_path: Path) -> None:
    refused = run_cli("provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                      "--state-dir", str(tmp_path / "state"), "--terminal-id", "t-0001",
                      "--muni", "392081", "--facility", "hall", "--mode", "event",
                      "--root-key", ROOT, "--broker", "", "--transport", "virtual")
    assert refused.returncode == 2 and "development only" in refused.stderr, refused.stderr
    assert not (tmp_path / "etc" / "reader.toml").exists()
    ja = run_cli("provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                 "--state-dir", str(tmp_path / "state"), "--transport", "virtual",
                 "--terminal-id", "t-0001", "--muni", "392081", "--facility", "hall",
                 "--mode", "event", "--root-key", ROOT, "--broker", "",
                 env=language_env("ja_JP.UTF-8"))
    assert ja.returncode == 2 and "開発用" in ja.stderr and "--dev" in ja.stderr, ja.stderr


def test_a_virtual_terminal_is_neither_kept_nor_changed_silently(tmp_path: Path) -> None:
    config = _first(tmp_path, "--transport", "virtual", "--dev")
    scripted = run_cli(*_again(tmp_path, "--terminal-id", "t-0001", "--muni", "392081",
                               "--facility", "hall", "--mode", "event", "--root-key", ROOT,
                               "--broker", ""))  # no terminal to ask, no --dev, --transport
    assert scripted.returncode == 2 and "--transport pcsc" in scripted.stderr, scripted.stderr
    assert tomllib.loads(config.read_text())["reader"]["transport"] == "virtual"
    # Asked without --dev: the offer is what is there, Enter is refused, pcsc is taken.
    code, screen = answered(_again(tmp_path), [""] * 6 + ["", "pcsc"])
    assert code == 0, screen
    assert "[virtual]" in screen and "not accepted: the virtual reader" in screen, screen
    assert tomllib.loads(config.read_text())["reader"]["transport"] == "pcsc"


def test_virtual_feed_is_a_flag_for_the_virtual_reader_only(tmp_path: Path) -> None:
    done = run_cli("provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                   "--state-dir", str(tmp_path / "state"), "--terminal-id", "t-0001",
                   "--muni", "392081", "--facility", "hall", "--mode", "event",
                   "--root-key", ROOT, "--broker", "", "--transport", "pcsc",
                   "--virtual-feed", str(tmp_path / "feed"))
    assert done.returncode == 2 and "--transport virtual --dev" in done.stderr, done.stderr
