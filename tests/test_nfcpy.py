"""The nfcpy transport through nfcpy's own udp driver, ISO-DEP and Type 4 tag code, with
reader.emulator.nfc_udp playing a Type 4B card. Vector verdicts, 61xx / 6Cxx and torn cards
are in test_transport_contract.py, shared with the other backends."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from spec_vectors import load_vectors

from reader.bundles.store import TrustStore
from reader.card.profiles import Profile
from reader.config import ReaderSettings
from reader.emulator.card import VirtualCard
from reader.errors import ReaderMissingError
from reader.terminal.tap import TapOutcome, perform_tap
from reader.transports import TapSource

pytest.importorskip("nfc", reason="nfcpy is not installed")

from reader.emulator.nfc_udp import FWT_S, Type4BPeer
from reader.transports.nfc import NfcpyTransport

pytestmark = pytest.mark.nfcpy
VECTORS = load_vectors()
CARDS = {c["name"]: c for c in VECTORS["cards"]}
MEMBER = Profile(bytes.fromhex(CARDS["valid-member"]["aid"]), "member")


@pytest.fixture
def peer() -> Iterator[Type4BPeer]:
    card_peer = Type4BPeer()
    yield card_peer
    card_peer.close()


@pytest.fixture
def source(peer: Type4BPeer) -> Iterator[TapSource]:
    tap_source = TapSource(NfcpyTransport(ReaderSettings(transport="nfcpy", nfc_path=peer.path)))
    yield tap_source
    tap_source.close()


def tap_once(source: TapSource, trust: TrustStore, timeout: float = 3.0) -> TapOutcome:
    deadline = time.monotonic() + timeout
    while (link := source.next_tap(0.2)) is None:
        assert time.monotonic() < deadline, f"no tap (reader {source.state})"
    return perform_tap(link, MEMBER, trust, "t-0001", wall=lambda: VECTORS["now"])


def test_tag_lost_mid_sequence_is_card_removed_within_a_second(
        peer: Type4BPeer, source: TapSource, trust: TrustStore) -> None:
    # Torn before INTERNAL AUTHENTICATE: the record verified, the proof never came.
    peer.tap(VirtualCard.from_vector(CARDS["valid-member"], tear_after=2))
    started = time.monotonic()
    outcome = tap_once(source, trust)
    assert outcome.reason == "card_removed" and outcome.signature is None
    assert "stopped answering" in outcome.detail
    assert time.monotonic() - started < 1.5  # nfcpy's retries over a 77 ms FWT


def test_a_card_slower_than_the_frame_waiting_time_asks_for_more_time(
        peer: Type4BPeer, source: TapSource, trust: TrustStore) -> None:
    # On-card ECDSA can outlast the FWT: the card sends S(WTX) and nfcpy waits, as a real
    # My Number Card does with an RC-S380.
    peer.tap(VirtualCard.from_vector(CARDS["valid-member"], sign_delay_s=4 * FWT_S))
    outcome = tap_once(source, trust)
    assert outcome.reason is None, outcome.detail
    assert outcome.timings_ms[-1] > 4 * FWT_S * 1000


def test_a_256_byte_answer_arrives_whole_through_iso_dep_chaining(
        peer: Type4BPeer, source: TapSource, trust: TrustStore) -> None:
    vector = CARDS["long-record"]  # READ BINARY Le=256: over the 253-byte frame payload
    peer.tap(VirtualCard.from_vector(vector))
    outcome = tap_once(source, trust)
    assert outcome.reason is None and outcome.record is not None
    assert outcome.record.mid == vector["expect"]["mid"]


def test_no_device_on_the_path_is_reader_missing_not_a_crash(
        caplog: pytest.LogCaptureFixture) -> None:
    transport = NfcpyTransport(ReaderSettings(transport="nfcpy", nfc_path="usb:ffff:ffff"))
    with pytest.raises(ReaderMissingError, match="usb:ffff:ffff"):
        transport.open()
    caplog.set_level(logging.INFO, logger="reader.transports.base")
    tap_source = TapSource(transport)
    for _ in range(4):
        assert tap_source.next_tap(0.1) is None
    assert tap_source.state == "missing"
    changes = [r for r in caplog.records if r.getMessage() == "reader state changed"]
    assert len(changes) == 1  # logged once, however many polls


def test_a_lost_device_is_reopened_and_used_again_within_2_s(
        peer: Type4BPeer, source: TapSource, trust: TrustStore) -> None:
    assert source.next_tap(0.1) is None and source.state == "ok"
    # What nfcpy does once the USB device is gone: its frontend has no device and every
    # call raises OSError(ENODEV). (The one emulation here: udp has no cable to pull.)
    transport = source.transport
    assert isinstance(transport, NfcpyTransport) and transport._clf is not None
    transport._clf.close()
    assert source.next_tap(0.1) is None and source.state == "missing"
    peer.tap(VirtualCard.from_vector(CARDS["valid-member"]))
    started = time.monotonic()
    outcome = tap_once(source, trust, timeout=2.0)
    assert outcome.reason is None and time.monotonic() - started < 2.0
    assert source.state == "ok"


def test_describe_names_the_device_on_the_path(peer: Type4BPeer) -> None:
    info = NfcpyTransport(ReaderSettings(transport="nfcpy", nfc_path=peer.path)).describe()
    assert [r.selected for r in info.readers] == [True]
    assert "UDP" in info.readers[0].name and peer.path in info.readers[0].note
