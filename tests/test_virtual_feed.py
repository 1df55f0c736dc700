"""The virtual reader's feed never stops the tap loop; no profile reaches a national AP."""

from __future__ import annotations

from pathlib import Path

import pytest

from reader.config import ReaderSettings, Settings
from reader.config.profiles import profile_for
from reader.emulator.issuer import DevIssuer
from reader.errors import ConfigError
from reader.transports import TapSource
from reader.transports.virtual import VirtualTransport


def test_broken_feed_files_are_dropped_and_the_next_card_is_tapped(tmp_path: Path) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "001.card").write_text('{"apps": []}')  # valid JSON, wrong shape
    (feed / "002.card").mkdir()  # not even a file
    (feed / "003.card").write_text("\xff not json")
    card = DevIssuer.generate().issue_card("SK-1", b"12345678")
    (feed / "004.card").write_text(card.to_json())
    source = TapSource(VirtualTransport(ReaderSettings(virtual_feed=feed)))
    link = None
    for _ in range(20):
        link = source.next_tap(0.05)
        if link is not None:
            break
    assert link is not None and source.state == "ok"
    assert link.transmit(bytes.fromhex("00A4040C0AF053554B554D4F494401"), 1.0) == b"\x90\x00"
    assert sorted(p.name for p in feed.iterdir()) == ["002.card-unreadable", "004.card"]


def test_a_national_application_can_never_be_configured(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="national"):
        Settings(ap={"aid": "D392F000260100000001"})
    profiles = tmp_path / "ap-profiles.toml"
    profiles.write_text('[profiles.checkin]\naid = "D3921000310001010408"\n')
    with pytest.raises(ConfigError, match="national"):
        profile_for(Settings(paths={"ap_profiles": profiles}))
