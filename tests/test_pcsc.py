"""The PC/SC transport through a real pcscd with vsmartcard's vpcd reader.

The tap loop here is the daemon's (TapSource → perform_tap) in a thread, while the test
does to pcscd what happens in the field: a card left lying on the reader, pcscd killed
and restarted, the reader gone and back. Verdicts of the vector cards, torn cards and
61xx / 6Cxx cards are in test_transport_contract.py, shared with the other backends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pcsc_env import VPCD_READER, Pcscd, pcscd, wait_until_field_empty  # noqa: F401
from smartcard import scard
from spec_vectors import load_vectors

from reader.bundles.store import TrustStore
from reader.card.profiles import Profile
from reader.config import MEMBER_AID, ReaderSettings
from reader.emulator.card import VirtualCard
from reader.emulator.vpcd import VpcdCard
from reader.errors import CardRemovedError, ReaderBusyError, ReaderMissingError, TransportError
from reader.terminal.tap import TapOutcome, perform_tap
from reader.transports import TapSource
from reader.transports.pcsc import PcscTransport, pick_reader, scard_error

pytestmark = pytest.mark.pcsc
VECTORS = load_vectors()
MEMBER = next(c for c in VECTORS["cards"] if c["name"] == "valid-member")


class TapLoop:
    """The daemon's reader loop in a thread: every tap's outcome and every state change."""

    def __init__(self, transport: PcscTransport, trust: TrustStore) -> None:
        self.outcomes: list[tuple[float, TapOutcome]] = []
        self.states: list[tuple[float, str]] = []
        self.source = TapSource(transport, on_state=self._state)
        self._trust = trust
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _state(self, state: str) -> None:
        self.states.append((time.monotonic(), state))

    def _run(self) -> None:
        while not self._stop.is_set():
            link = self.source.next_tap(0.25)
            if link is not None:
                outcome = perform_tap(link, Profile(bytes.fromhex(MEMBER_AID), "member"),
                                      self._trust, "t-0001", wall=lambda: VECTORS["now"])
                self.outcomes.append((time.monotonic(), outcome))

    def __enter__(self) -> TapLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.source.close()

    def wait_for(self, what: str, predicate: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.states}"
            time.sleep(0.02)


@pytest.fixture
def transport() -> PcscTransport:
    return PcscTransport(ReaderSettings(transport="pcsc", pcsc_reader=VPCD_READER))


@pytest.fixture
def slot(pcscd: Pcscd) -> Iterator[VpcdCard]:  # noqa: F811
    card_slot = VpcdCard(pcscd.port)
    yield card_slot
    card_slot.lift()
    wait_until_field_empty()


def member_card() -> VirtualCard:
    return VirtualCard.from_vector(MEMBER)


def test_reader_pick_by_substring_else_first_contactless_else_first() -> None:
    readers = ["Alcor Micro AU9540 00 00", "SONY FeliCa Port/PaSoRi 4.0 (0123) 01 00",
               "Virtual PCD 00 00"]
    assert pick_reader(readers, "virtual") == "Virtual PCD 00 00"
    assert pick_reader(readers, "") == "SONY FeliCa Port/PaSoRi 4.0 (0123) 01 00"
    assert pick_reader(["Alcor Micro AU9540 00 00"], "") == "Alcor Micro AU9540 00 00"
    assert pick_reader(readers, "RC-S380") is None
    assert pick_reader([], "") is None


def test_scard_codes_map_to_the_exception_tree() -> None:
    assert isinstance(scard_error(scard.SCARD_W_REMOVED_CARD, "x"), CardRemovedError)
    assert isinstance(scard_error(scard.SCARD_E_NO_SMARTCARD, "x"), CardRemovedError)
    for gone in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED,
                 scard.SCARD_F_COMM_ERROR, scard.SCARD_E_UNKNOWN_READER):
        assert isinstance(scard_error(gone, "x"), ReaderMissingError)
    other = scard_error(scard.SCARD_E_INVALID_PARAMETER, "transmit")
    assert type(other) is TransportError and "transmit" in str(other)


def test_readers_are_listed_with_the_one_the_config_picks(pcscd: Pcscd,  # noqa: F811
                                                          slot: VpcdCard) -> None:
    slot.tap(member_card())
    time.sleep(0.6)  # pcscd polls vpcd every 400 ms
    info = PcscTransport(ReaderSettings(transport="pcsc")).describe()
    assert info.available
    names = [r.name for r in info.readers]
    assert names == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert [r.selected for r in info.readers] == [True, False]
    assert [r.card_present for r in info.readers] == [True, False]


def test_a_reader_name_that_matches_nothing_is_reader_missing(pcscd: Pcscd) -> None:  # noqa: F811
    absent = PcscTransport(ReaderSettings(transport="pcsc", pcsc_reader="RC-S300"))
    with pytest.raises(ReaderMissingError, match="Virtual PCD 00 00"):
        absent.open()


def test_a_card_left_on_the_reader_for_5_s_counts_once(
        transport: PcscTransport, slot: VpcdCard, trust: TrustStore) -> None:
    with TapLoop(transport, trust) as loop:
        slot.tap(member_card())
        loop.wait_for("the tap", lambda: loop.outcomes, 3)
        time.sleep(5)
        assert len(loop.outcomes) == 1 and loop.outcomes[0][1].reason is None
        slot.lift()
        loop.wait_for("the card to leave", lambda: not loop.source.card_on_reader, 3)
        slot.tap(member_card())
        loop.wait_for("the second tap", lambda: len(loop.outcomes) == 2, 3)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_pcscd_restarted_under_a_running_loop_taps_again_within_2_s(
        pcscd: Pcscd, transport: PcscTransport, slot: VpcdCard,  # noqa: F811
        trust: TrustStore, caplog: pytest.LogCaptureFixture, how: int) -> None:
    caplog.set_level(logging.INFO, logger="reader.transports.base")
    with TapLoop(transport, trust) as loop:
        loop.wait_for("the reader", lambda: loop.source.state == "ok", 3)
        pcscd.stop(how)
        loop.wait_for("reader missing", lambda: loop.source.state == "missing", 3)
        time.sleep(1.0)  # several polls while pcscd is down
        pcscd.start()
        slot.tap(member_card())  # the card lies on the reader as pcscd comes back
        back = time.monotonic()
        loop.wait_for("a tap after the restart", lambda: loop.outcomes, 2.0)
        assert loop.outcomes[0][0] - back < 2.0
        assert loop.outcomes[0][1].reason is None
    changes = [r for r in caplog.records if r.getMessage() == "reader state changed"]
    assert [s for _, s in loop.states] == ["ok", "missing", "ok"]
    assert len(changes) == 3  # logged once per change, not once per poll


def test_reader_unplugged_and_back_is_used_again_within_2_s(
        pcscd: Pcscd, transport: PcscTransport, slot: VpcdCard,  # noqa: F811
        trust: TrustStore) -> None:
    # vpcd is a serial-style driver: pcscd never drops it while running. "Unplugged" is
    # pcscd running with no such reader, as after pulling the RC-S300's USB cable.
    with TapLoop(transport, trust) as loop:
        loop.wait_for("the reader", lambda: loop.source.state == "ok", 3)
        try:
            pcscd.unplug_vpcd()
            pcscd.restart()
            loop.wait_for("reader missing", lambda: loop.source.state == "missing", 3)
            time.sleep(1.0)
            assert loop.source.state == "missing"
        finally:
            pcscd.plug_vpcd()
            pcscd.restart()
        slot.tap(member_card())
        back = time.monotonic()
        loop.wait_for("a tap on the reader plugged back", lambda: loop.outcomes, 2.0)
        assert loop.outcomes[0][0] - back < 2.0 and loop.outcomes[0][1].reason is None


def test_card_torn_away_ends_the_vpcd_connection_and_the_tap(
        transport: PcscTransport, slot: VpcdCard, trust: TrustStore) -> None:
    with TapLoop(transport, trust) as loop:
        slot.tap(VirtualCard.from_vector(MEMBER, tear_after=2, style="61xx"))
        loop.wait_for("the tap", lambda: loop.outcomes, 3)
        assert loop.outcomes[0][1].reason == "card_removed"
        assert slot.torn.is_set() and not slot.present
        loop.wait_for("the field to empty", lambda: not loop.source.card_on_reader, 3)


def test_readers_command_points_at_the_reader_the_config_picks(
        pcscd: Pcscd, slot: VpcdCard) -> None:  # noqa: F811
    from reader.cli.readers import configured_reader_found, render, survey

    slot.tap(member_card())
    time.sleep(0.6)
    settings = ReaderSettings(transport="pcsc", pcsc_reader="PCD 00 01")
    infos = survey(settings)
    text = render(settings, infos)
    assert configured_reader_found(settings, infos)
    assert "→ Virtual PCD 00 01  (contactless, no card)   ← the terminal uses this one" in text
    assert "  Virtual PCD 00 00  (contactless, card on it)" in text
    wrong = ReaderSettings(transport="pcsc", pcsc_reader="RC-S300")
    assert not configured_reader_found(wrong, survey(wrong))


def test_tap_command_shows_each_apdu_and_the_verdict(
        slot: VpcdCard, trust: TrustStore, tmp_path: Path) -> None:
    from reader.cli.tap import render, wait_and_tap
    from reader.config import Settings

    settings = Settings(reader=ReaderSettings(transport="pcsc", pcsc_reader=VPCD_READER),
                        terminal={"id": "t-0001"}, paths={"state_dir": tmp_path})
    slot.tap(VirtualCard.from_vector(MEMBER, style="61xx"))
    said: list[str] = []
    outcome = wait_and_tap(settings, trust, timeout=3, say=said.append)
    assert outcome is not None and outcome.reason is None
    text = render(outcome)
    assert [line.split()[0] for line in text.splitlines()[1:6]] == [
        "SELECT", "READ", "GET", "INTERNAL", "GET"]
    assert "ACCEPTED  mid=SK-000123  sn=0102030405060708" in text
    assert said[-1] == "reader: working"


def test_two_configurations_on_one_reader_cannot_both_read_it(pcscd: Pcscd,  # noqa: F811
                                                              slot: VpcdCard) -> None:
    # One daemon picks the reader by default, another by a substring of its name: pcscd
    # would hand both every card; the reader's lock (claim.py) names it by pcscd's name.
    first = TapSource(PcscTransport(ReaderSettings(transport="pcsc")), claim=True)
    second = TapSource(PcscTransport(ReaderSettings(transport="pcsc", pcsc_reader="pcd 00 00")),
                       claim=True)
    try:
        assert first.next_tap(0.1) is None and first.state == "ok"
        with pytest.raises(ReaderBusyError, match=VPCD_READER) as refused:
            second.next_tap(0.1)
        assert refused.value.pid == os.getpid() and refused.value.reader == f"pcsc:{VPCD_READER}"
        # Another reader of the same pcscd is not this one's: it may be read.
        other = TapSource(PcscTransport(ReaderSettings(transport="pcsc",
                                                       pcsc_reader="PCD 00 01")), claim=True)
        assert other.next_tap(0.1) is None and other.state == "ok"
        other.close()
        first.close()  # the reader let go of (a daemon's stop or end)
        slot.tap(member_card())
        link = wait_for_link(second)
        assert link is not None
    finally:
        first.close()
        second.close()


def wait_for_link(source: TapSource, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link = source.next_tap(0.2)
        if link is not None:
            return link
    return None
