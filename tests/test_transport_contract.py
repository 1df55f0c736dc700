"""One contract, three backends: virtual, pcsc (real pcscd + vpcd) and nfcpy (its real udp
driver and ISO-DEP stack against a Type 4B card peer) — python-can's back-to-back
pattern, so the readers cannot drift apart in anything a citizen notices.

Each rig puts a VirtualCard in the field its own way: `present` / `lift` on the virtual
reader, a TCP client of vpcd, a UDP peer for nfcpy. Everything else — TapSource, the
card session, the verdict — is the code the daemon runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from pcsc_env import VPCD_READER, pcscd, wait_until_field_empty  # noqa: F401
from spec_vectors import load_vectors

from reader.bundles.store import TrustStore
from reader.card.profiles import Profile
from reader.config import ReaderSettings
from reader.emulator.card import VirtualCard
from reader.terminal.tap import TapOutcome, perform_tap
from reader.transports import TapSource, Transport

VECTORS = load_vectors()
CARDS = {c["name"]: c for c in VECTORS["cards"]}
BACKENDS = ["virtual", "pcsc", "nfcpy"]


class Rig(Protocol):
    transport: Transport

    def present(self, card: VirtualCard) -> None: ...
    def lift(self) -> None: ...


class VirtualRig:
    def __init__(self) -> None:
        from reader.transports.virtual import VirtualTransport

        self.transport = VirtualTransport()

    def present(self, card: VirtualCard) -> None:
        self.transport.present(card)

    def lift(self) -> None:
        self.transport.lift()


class PcscRig:
    def __init__(self, port: int) -> None:
        from reader.emulator.vpcd import VpcdCard
        from reader.transports.pcsc import PcscTransport

        self.slot = VpcdCard(port)
        self.transport = PcscTransport(ReaderSettings(transport="pcsc", pcsc_reader=VPCD_READER))

    def present(self, card: VirtualCard) -> None:
        self.slot.tap(card)

    def lift(self) -> None:
        self.slot.lift()
        wait_until_field_empty()


class NfcpyRig:
    def __init__(self) -> None:
        from reader.emulator.nfc_udp import Type4BPeer
        from reader.transports.nfc import NfcpyTransport

        self.peer = Type4BPeer()
        self.transport = NfcpyTransport(ReaderSettings(transport="nfcpy", nfc_path=self.peer.path))

    def present(self, card: VirtualCard) -> None:
        self.peer.tap(card)

    def lift(self) -> None:
        self.peer.lift()


@pytest.fixture(params=BACKENDS)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "pcsc":
        made: Rig = PcscRig(request.getfixturevalue("pcscd").port)
    elif request.param == "nfcpy":
        pytest.importorskip("nfc", reason="nfcpy is not installed")
        made = NfcpyRig()
    else:
        made = VirtualRig()
    yield made
    made.lift()
    made.transport.close()
    if isinstance(made, NfcpyRig):
        made.peer.close()


@pytest.fixture
def source(rig: Rig) -> Iterator[TapSource]:
    tap_source = TapSource(rig.transport)
    yield tap_source
    tap_source.close()


def profile_for(vector: dict[str, Any]) -> Profile:
    ap = "nursery" if vector["aid"].upper().endswith("02") else "member"
    return Profile(bytes.fromhex(vector["aid"]), ap)


def next_tap(source: TapSource, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link = source.next_tap(0.2)
        if link is not None:
            return link
    raise AssertionError(f"no tap within {timeout} s (reader state {source.state})")


def tap(source: TapSource, vector: dict[str, Any], trust: TrustStore) -> TapOutcome:
    return perform_tap(next_tap(source), profile_for(vector), trust, "t-0001",
                       wall=lambda: VECTORS["now"])


def lift_and_settle(rig: Rig, source: TapSource, timeout: float = 3.0) -> None:
    """Lift the card and let the reader see the field empty (pcscd polls every 400 ms)."""
    rig.lift()
    deadline = time.monotonic() + timeout
    while source.card_on_reader:
        assert source.next_tap(0.1) is None, "a tap with no card on the reader"
        assert time.monotonic() < deadline, "the reader never saw the card leave"


def assert_verdict(outcome: TapOutcome, vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    if expect["result"] == "accepted":
        assert outcome.reason is None, outcome.detail
        assert outcome.record is not None and outcome.record.mid == expect["mid"]
        assert outcome.record.sn.hex() == expect["sn"]
    else:
        assert outcome.reason == expect["reason"], outcome.detail


def test_every_vector_card_gives_its_verdict(rig: Rig, source: TapSource,
                                             trust: TrustStore) -> None:
    for vector in CARDS.values():
        rig.present(VirtualCard.from_vector(vector))
        assert_verdict(tap(source, vector, trust), vector)
        lift_and_settle(rig, source)


@pytest.mark.parametrize("style", ["61xx", "6Cxx"])
@pytest.mark.parametrize("name", ["valid-member", "long-record", "clone"])
def test_61xx_and_6cxx_answering_cards(rig: Rig, source: TapSource, trust: TrustStore,
                                        style: str, name: str) -> None:
    vector = CARDS[name]
    rig.present(VirtualCard.from_vector(vector, style=style))
    assert_verdict(tap(source, vector, trust), vector)


@pytest.mark.parametrize("tear_after", [0, 1, 2], ids=["at-select", "at-read", "at-authenticate"])
def test_card_removed_mid_sequence_is_card_removed_and_reader_goes_on(
        rig: Rig, source: TapSource, trust: TrustStore, tear_after: int) -> None:
    vector = CARDS["valid-member"]
    rig.present(VirtualCard.from_vector(vector, tear_after=tear_after))
    outcome = tap(source, vector, trust)
    assert outcome.reason == "card_removed"
    assert outcome.signature is None  # nothing that could be recorded as accepted
    lift_and_settle(rig, source)
    rig.present(VirtualCard.from_vector(vector))  # the citizen taps again: it works
    assert tap(source, vector, trust).reason is None


def test_card_left_on_the_reader_counts_once(rig: Rig, source: TapSource,
                                             trust: TrustStore) -> None:
    vector = CARDS["valid-member"]
    rig.present(VirtualCard.from_vector(vector))
    assert tap(source, vector, trust).reason is None
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert source.next_tap(0.2) is None, "a card lying on the reader counted twice"
    assert source.card_on_reader
    lift_and_settle(rig, source)
    rig.present(VirtualCard.from_vector(vector))
    assert tap(source, vector, trust).reason is None  # lifted and tapped again: counts


def test_no_card_no_tap_and_the_wait_is_bounded(rig: Rig, source: TapSource) -> None:
    started = time.monotonic()
    assert source.next_tap(0.3) is None
    assert time.monotonic() - started < 1.5
    assert source.state == "ok"


def test_a_card_without_the_city_application_is_not_registered(
        rig: Rig, source: TapSource, trust: TrustStore) -> None:
    vector = CARDS["valid-nursery"]  # only the nursery AP: the member AP is missing
    rig.present(VirtualCard.from_vector(vector))
    outcome = perform_tap(next_tap(source), profile_for(CARDS["valid-member"]), trust,
                          "t-0001", wall=lambda: VECTORS["now"])
    assert outcome.reason == "not_registered"


DEADLINE_S = 1.5


@pytest.mark.parametrize("fault", [
    {"silent_after": 2},  # answered SELECT and a READ BINARY, then never again
    {"silent_after": 0},  # never answered one APDU
    {"sign_delay_s": 45.0},  # a 45 s on-card signature
    {"apdu_delay_s": 0.3, "style": "61xx"},  # every APDU slow, and twice as many
], ids=["silent-mid-tap", "silent-from-the-start", "slow-signature", "slow-61xx"])
def test_a_card_that_stalls_ends_at_the_tap_deadline_and_counts_once(
        rig: Rig, source: TapSource, trust: TrustStore, fault: dict[str, Any]) -> None:
    vector = CARDS["valid-member"]
    rig.present(VirtualCard.from_vector(vector, **fault))
    link = next_tap(source)
    started = time.monotonic()
    outcome = perform_tap(link, profile_for(vector), trust, "t-0001",
                          wall=lambda: VECTORS["now"], deadline_s=DEADLINE_S)
    took = time.monotonic() - started
    assert outcome.reason == "card_error", outcome.detail
    assert outcome.signature is None  # nothing that could be recorded as accepted
    assert took < DEADLINE_S + 0.3, f"the tap took {took:.2f} s"
    # Still lying on the reader (silent, or busy with its signature): no second tap.
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        assert source.next_tap(0.2) is None, "a stalled card lying on the reader counted again"
    lift_and_settle(rig, source)
    rig.present(VirtualCard.from_vector(vector))  # the next card is read normally
    assert tap(source, vector, trust).reason is None


def test_a_card_lifted_while_still_working_is_card_removed_before_the_deadline(
        rig: Rig, source: TapSource, trust: TrustStore) -> None:
    vector = CARDS["valid-member"]
    rig.present(VirtualCard.from_vector(vector, sign_delay_s=45.0))
    link = next_tap(source)
    lifter = threading.Timer(0.5, rig.lift)  # the citizen gives up during the signature
    started = time.monotonic()
    lifter.start()
    try:
        outcome = perform_tap(link, profile_for(vector), trust, "t-0001",
                              wall=lambda: VECTORS["now"], deadline_s=5.0)
    finally:
        lifter.join()
    assert outcome.reason == "card_removed", outcome.detail
    assert time.monotonic() - started < 2.5  # seen leaving, not held to the deadline
