"""Property tests: whatever a card answers, a tap ends with one of the spec's reasons.

Hostile cards are generated at every step: random status words, truncated and
oversized responses, random and mutated EF.RECORD contents, fuzzed record maps signed
by the real (vector) issuer so they get past the signature into the record checks.
The CI profile runs a few hundred cases per property; HYPOTHESIS_PROFILE=nightly
runs 10,000 each.
"""

from __future__ import annotations

import cbor2
from hypothesis import given
from hypothesis import strategies as st
from spec_vectors import load_vectors, vector_trust

from reader.card.cose import private_key_from_scalar, sign1
from reader.card.profiles import Profile
from reader.emulator.card import VirtualCard
from reader.errors import CardRemovedError
from reader.terminal.tap import perform_tap
from reader.transports.base import CardLink

VECTORS = load_vectors()
TRUST = vector_trust(VECTORS)
NOW = VECTORS["now"]
VALID = next(c for c in VECTORS["cards"] if c["name"] == "valid-member")
VALID_EF = bytes.fromhex(VALID["ef_record_hex"])
AID = bytes.fromhex(VALID["aid"])
PROFILE = Profile(AID, "member")
ISSUER = private_key_from_scalar(bytes.fromhex(VECTORS["issuer"]["private_scalar_hex"]))
KID = bytes.fromhex(VECTORS["issuer"]["kid_hex"])
REASONS = {None, "not_registered", "bad_record", "unknown_issuer", "bad_signature", "expired",
           "not_yet_valid", "revoked", "clone_suspected", "card_removed", "card_error"}


class ScriptedLink(CardLink):
    """Answers with the given responses in order, then the card is gone."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = list(responses)
        self.commands: list[bytes] = []

    def transmit(self, command: bytes, timeout: float) -> bytes:
        self.commands.append(command)
        if not self.responses:
            raise CardRemovedError("scripted card ran out of answers")
        return self.responses.pop(0)


def tap(link: CardLink):
    outcome = perform_tap(link, PROFILE, TRUST, "t-0001", wall=lambda: NOW)
    assert outcome.reason in REASONS
    if outcome.reason is None:
        assert outcome.record is not None
    return outcome


status_words = st.sampled_from([b"\x90\x00", b"\x62\x82", b"\x6A\x82", b"\x69\x82", b"\x69\x85",
                                b"\x6B\x00", b"\x67\x00", b"\x6D\x00", b"\x6E\x00"]) | \
    st.binary(min_size=2, max_size=2).filter(lambda sw: sw[0] not in (0x61, 0x6C)) | \
    st.builds(lambda x: bytes([0x61, x]), st.integers(0, 255)) | \
    st.builds(lambda x: bytes([0x6C, x]), st.integers(0, 255))
responses = st.builds(lambda data, sw: data + sw, st.binary(max_size=300), status_words) | \
    st.binary(max_size=4)  # truncated: no or half a status word


@given(st.lists(responses, max_size=80))
def test_any_response_sequence_ends_with_a_spec_reason(answers):
    link = ScriptedLink(answers)
    tap(link)
    assert len(link.commands) <= 70  # bounded, never a loop


@given(st.integers(0, len(VALID_EF) - 1), st.integers(1, 255), st.integers(0, 3))
def test_mutated_record_is_never_accepted_as_someone_else(pos, xor, mode):
    ef = bytearray(VALID_EF)
    if mode == 0:
        ef[pos] ^= xor  # flip bits
    elif mode == 1:
        ef = ef[:pos]  # truncate
    elif mode == 2:
        ef = ef + bytes([xor]) * pos  # oversize
    else:
        ef[0:2] = (pos * xor).to_bytes(2, "big")  # lie about the length
    card = VirtualCard({AID: bytes(ef)}, private_key_from_scalar(
        bytes.fromhex(VALID["card_private_scalar_hex"])))
    outcome = tap(_link(card))
    if outcome.reason is None:  # only possible where the change was outside what is signed
        assert outcome.record.mid == "SK-000123" and outcome.record.sn.hex() == "0102030405060708"


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.binary(max_size=70)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
record_fields = st.fixed_dictionaries({}, optional={
    "v": st.sampled_from([1, 2, 0, True]) | cbor_values,
    "muni": st.sampled_from(["392081", "39208", "abcdef"]) | cbor_values,
    "ap": st.sampled_from(["member", "nursery", "x"]) | cbor_values,
    "mid": st.from_regex(r"[A-Za-z0-9-]{0,34}", fullmatch=True) | cbor_values,
    "sn": st.binary(min_size=7, max_size=9) | cbor_values,
    "pk": st.just(b"\x04" + b"\x01" * 64) | st.binary(min_size=65, max_size=65) | cbor_values,
    "iat": st.integers(0, 2**40) | cbor_values,
    "exp": st.integers(0, 2**40) | cbor_values,
    "attr": st.dictionaries(st.text(max_size=8), st.booleans() | st.integers() | st.text(),
                            max_size=3) | cbor_values,
}).map(lambda d: {**d, **({} if d else {"v": 1})})


@given(record_fields)
def test_random_signed_records_end_with_a_spec_reason(body):
    signed = sign1(cbor2.dumps(body), ISSUER, KID)
    if len(signed) > 2048:
        return
    card = VirtualCard({AID: len(signed).to_bytes(2, "big") + signed},
                       private_key_from_scalar(bytes.fromhex(VALID["card_private_scalar_hex"])))
    tap(_link(card))


@given(st.binary(max_size=600))
def test_random_ef_record_bytes(content):
    card = VirtualCard({AID: content}, private_key_from_scalar(
        bytes.fromhex(VALID["card_private_scalar_hex"])))
    assert tap(_link(card)).reason is not None


def _link(card: VirtualCard) -> CardLink:
    from reader.transports.virtual import VirtualTransport

    transport = VirtualTransport()
    transport.present(card)
    link = transport.wait_for_card(0.1)
    assert link is not None
    return link
