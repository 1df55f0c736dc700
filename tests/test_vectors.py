"""Every vector of ../shared/spec/vectors/card-ap-v1.json gives its `expect`."""

from __future__ import annotations

import pytest
from spec_vectors import load_vectors, vector_trust

from reader.bundles.store import TrustStore
from reader.card.checks import card_signature_valid, make_challenge
from reader.card.cose import point_of, private_key_from_scalar, verify_raw
from reader.card.profiles import Profile
from reader.card.record import parse_signed_record, split_ef_record
from reader.card.session import AUTH_PREFIX
from reader.emulator.card import VirtualCard
from reader.errors import BundleError
from reader.terminal.tap import perform_tap
from reader.transports.virtual import VirtualTransport

VECTORS = load_vectors()
CARDS = VECTORS["cards"]
NATIONAL_PREFIX = bytes.fromhex("D392")


def profile_for_card(vector: dict) -> Profile:
    ap = "nursery" if vector["aid"].upper().endswith("02") else "member"
    return Profile(bytes.fromhex(vector["aid"]), ap, authenticate=True)


def tap_vector(vector: dict, trust, style: str = "plain", tid: str = "t-0001"):
    transport = VirtualTransport()
    card = VirtualCard.from_vector(vector, style=style)
    transport.present(card)
    link = transport.wait_for_card(0.1)
    outcome = perform_tap(link, profile_for_card(vector), trust, tid,
                          wall=lambda: VECTORS["now"])
    return outcome, card


@pytest.mark.parametrize("style", ["plain", "61xx", "6Cxx"])
@pytest.mark.parametrize("vector", CARDS, ids=[c["name"] for c in CARDS])
def test_card_vector_gives_expected_verdict(vector, style, trust):
    outcome, card = tap_vector(vector, trust, style)
    expect = vector["expect"]
    if expect["result"] == "accepted":
        assert outcome.reason is None, outcome.detail
        assert outcome.record.mid == expect["mid"]
        assert outcome.record.sn.hex() == expect["sn"]
        assert outcome.signature is not None and len(outcome.nonce) == 16
    else:
        assert outcome.reason == expect["reason"], outcome.detail
    # The national APs (JPKI, 券面, 券面入力補助, 住基) are never selected, on any card.
    selects = [apdu for apdu in card.log if apdu[1] == 0xA4]
    assert selects, "the tap must SELECT the city AP"
    for apdu in selects:
        aid = apdu[5:5 + apdu[4]]
        assert aid == bytes.fromhex(vector["aid"])
        assert not aid.startswith(NATIONAL_PREFIX)


def test_long_record_needs_several_reads(trust):
    vector = next(c for c in CARDS if c["name"] == "long-record")
    _, card = tap_vector(vector, trust)
    reads = [apdu for apdu in card.log if apdu[1] == 0xB0]
    assert len(reads) >= 5
    assert reads[0] == bytes.fromhex("00B0810000")  # by SFI first, then by offset
    assert all(r[2] & 0x80 == 0 for r in reads[1:])


def test_challenge_vector():
    c = VECTORS["challenge"]
    import uuid

    challenge = make_challenge(c["terminal_id"], uuid.UUID(c["event_id"]).bytes, c["at_ms"],
                               bytes.fromhex(c["nonce_hex"]))
    assert challenge.hex() == c["challenge_hex"]


@pytest.mark.parametrize("case", VECTORS["internal_authenticate"],
                         ids=lambda c: f"valid={c['valid']}")
def test_internal_authenticate_vector(case):
    card = next(c for c in CARDS if c["name"] == case["card"])
    _, record = parse_signed_record(split_ef_record(bytes.fromhex(card["ef_record_hex"])))
    ok = card_signature_valid(record, bytes.fromhex(case["challenge_hex"]),
                              bytes.fromhex(case["signature_hex"]))
    assert ok is case["valid"]
    # and the vector card's private key matches its record's pk
    key = private_key_from_scalar(bytes.fromhex(card["card_private_scalar_hex"]))
    assert point_of(key.public_key()) == record.pk
    assert verify_raw(key.public_key(), bytes.fromhex(VECTORS["internal_authenticate"][0]
                                                      ["signature_hex"]),
                      AUTH_PREFIX + bytes.fromhex(case["challenge_hex"]))


def test_bundles_apply_with_versions(vectors):
    trust = vector_trust(vectors)
    config = bytes.fromhex(vectors["bundles"]["config_bundle_hex"])
    assert trust.apply("config", config, now=vectors["now"]) == 7
    assert trust.versions == {"trust": 3, "denylist": 41, "config": 7}
    assert trust.config_settings["mode"] == "checkin"
    assert trust.is_denied(b"abcdefgh", "x") and trust.is_denied(b"\0" * 8, "SK-SUSPENDED-1")


@pytest.mark.parametrize("bundle", VECTORS["bundles"]["refuse"], ids=lambda b: b["name"])
def test_refuse_bundles_are_refused_and_nothing_changes(vectors, bundle, tmp_path):
    trust = vector_trust(vectors, bundle_dir=tmp_path)
    trust.apply("config", bytes.fromhex(vectors["bundles"]["config_bundle_hex"]),
                now=vectors["now"])
    before = trust.versions
    stored = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(BundleError):
        trust.apply(bundle["topic_kind"], bytes.fromhex(bundle["hex"]), now=vectors["now"])
    assert trust.versions == before
    assert trust.refused == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == stored
    # the terminal keeps verifying with what it had
    valid = next(c for c in CARDS if c["name"] == "valid-member")
    assert tap_vector(valid, trust)[0].reason is None


def test_bundles_survive_restart_without_network(vectors, tmp_path):
    vector_trust(vectors, bundle_dir=tmp_path)
    restarted = TrustStore(bytes.fromhex(vectors["root_public_hex"]), "392081", "t-0001",
                           tmp_path)
    restarted.load_persisted(now=vectors["now"])
    assert restarted.versions["trust"] == 3 and restarted.versions["denylist"] == 41
    revoked = next(c for c in CARDS if c["name"] == "revoked")
    assert tap_vector(revoked, restarted)[0].reason == "revoked"


def test_stored_denylist_outlives_a_rotated_ops_key_and_keeps_its_version(tmp_path):
    """A restart after the city replaced its ops key keeps the stored denylist in force
    (it was verified on arrival) and still refuses an older one (no rollback)."""
    from reader.emulator.issuer import DevIssuer

    city = DevIssuer.generate()
    trust = TrustStore(bytes.fromhex(city.root_public_hex), city.muni, "t-0001", tmp_path)
    trust.apply("trust", city.trust_bundle(1))
    trust.apply("denylist", city.denylist_bundle(5, [b"revoked!"]))
    rotated = DevIssuer(city.root, city.issuer, DevIssuer.generate().ops, city.muni,
                        city.issuer_kid, b"dev-ops-rotated")
    trust.apply("trust", rotated.trust_bundle(2))
    restarted = TrustStore(bytes.fromhex(city.root_public_hex), city.muni, "t-0001", tmp_path)
    restarted.load_persisted()
    assert restarted.versions["denylist"] == 5
    assert restarted.is_denied(b"revoked!", "anyone")
    with pytest.raises(BundleError):
        restarted.apply("denylist", rotated.denylist_bundle(1, []))
    assert restarted.is_denied(b"revoked!", "anyone")
