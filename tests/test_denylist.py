"""The denylist as the tap path reads it (issue 13): a packed, sorted array of serials that
answers exactly as a set of them would, refuses a malformed bundle like before, and holds
8 bytes a serial. Load time and lookup time are figures of `scripts/bench`, not tests."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reader.bundles.store import SerialSet, TrustStore
from reader.emulator.issuer import DevIssuer
from reader.errors import BundleError

serial = st.binary(min_size=8, max_size=8)


@given(st.lists(serial, max_size=300), st.lists(serial, max_size=300))
def test_membership_is_exactly_that_of_a_set(denied: list[bytes], asked: list[bytes]) -> None:
    held = SerialSet.of(denied)
    assert len(held) == len(denied)
    for sn in denied + asked:
        assert (sn in held) == (sn in set(denied))


def test_neighbours_of_denied_serials_are_not_denied() -> None:
    # Sequential serials, unsorted and repeated, as a city's list may come: the byte
    # order of the integers must not let a neighbour or a byte-reversed serial through.
    denied = [n.to_bytes(8, "big") for n in range(1000, 3000, 2)]
    shuffled = denied + denied[:10]
    random.shuffle(shuffled)
    held = SerialSet.of(shuffled)
    for n in range(990, 3010):
        sn = n.to_bytes(8, "big")
        assert (sn in held) == (n % 2 == 0 and 1000 <= n < 3000), n
        assert (n.to_bytes(8, "little") in held) == (sn[::-1] in set(denied))
    assert b"\0" * 7 not in held and b"\0" * 9 not in held and "x" not in held
    # packed: no object per serial; the bucket index is a few bytes per four serials
    assert 8 * len(shuffled) <= held.nbytes <= 9 * len(shuffled)


# Serials sharing a vendor's first bytes, and runs of neighbours: buckets are cut below
# the shared prefix, and a key on a bucket's edge must be found from either side.
clustered = st.builds(lambda tail, prefix: prefix + tail,
                      st.binary(min_size=5, max_size=5), st.sampled_from([b"\x04\x00\x00",
                                                                          b"\xff\xff\xff"]))


@given(st.lists(clustered, max_size=300), st.lists(clustered, max_size=300))
def test_membership_of_clustered_serials_is_exactly_that_of_a_set(
        denied: list[bytes], asked: list[bytes]) -> None:
    held = SerialSet.of(denied)
    keys = [int.from_bytes(sn, "big") + d for sn in denied for d in (-1, 1)]
    neighbours = [key.to_bytes(8, "big") for key in keys if 0 <= key < 2**64]
    for sn in denied + asked + neighbours:
        assert (sn in held) == (sn in set(denied))


@pytest.mark.parametrize("serials", [[b"1234567"], [b"123456789"], ["12345678"], [8]],
                         ids=["7-bytes", "9-bytes", "text", "number"])
def test_a_malformed_serial_refuses_the_whole_bundle(serials: list[object]) -> None:
    city = DevIssuer.generate()
    trust = TrustStore(bytes.fromhex(city.root_public_hex), city.muni, "t-0001")
    trust.apply("trust", city.trust_bundle(1))
    trust.apply("denylist", city.denylist_bundle(1, [b"revoked!"]))
    with pytest.raises(BundleError) as refused:
        trust.apply("denylist", city.denylist_bundle(2, [os.urandom(8), *serials]))  # type: ignore[list-item]
    assert refused.value.reason == "malformed"
    assert trust.is_denied(b"revoked!", "anyone")  # the held list stays in force
    assert trust.versions["denylist"] == 1
