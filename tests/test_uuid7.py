"""UUIDv7 (RFC 9562): layout, time order, and strict monotonicity within one process."""

from __future__ import annotations

import threading
import uuid

import pytest

from reader.system.uuid7 import _RANDOM_MAX, _Generator, timestamp_ms, uuid7, uuid7_str


def test_layout_is_rfc_9562_version_7() -> None:
    u = _Generator().next(now_ms=0x0123456789AB)
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert str(u).startswith("01234567-89ab-7")
    assert timestamp_ms(u) == timestamp_ms(str(u)) == 0x0123456789AB
    assert len(uuid7_str()) == 36
    assert uuid7().version == 7


def test_ids_within_one_millisecond_strictly_increase() -> None:
    gen = _Generator()
    ids = [gen.next(now_ms=1_700_000_000_000) for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {timestamp_ms(u) for u in ids} == {1_700_000_000_000}


def test_a_clock_stepped_backwards_does_not_make_ids_go_back() -> None:
    gen = _Generator()
    before = gen.next(now_ms=1_700_000_005_000)
    after = gen.next(now_ms=1_700_000_000_000)  # NTP stepped the Pi's clock back 5 s
    assert after > before and timestamp_ms(after) == 1_700_000_005_000
    later = gen.next(now_ms=1_700_000_006_000)
    assert later > after and timestamp_ms(later) == 1_700_000_006_000


def test_exhausted_counter_borrows_the_next_millisecond() -> None:
    gen = _Generator()
    gen.next(now_ms=1000)
    gen._last_random = _RANDOM_MAX  # as if 2^74 ids were made in this millisecond
    u = gen.next(now_ms=1000)
    assert timestamp_ms(u) == 1001 and u.version == 7


def test_ids_from_many_threads_are_unique_and_parse_as_uuids() -> None:
    out: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        ids = [uuid7_str() for _ in range(2000)]
        with lock:
            out.extend(ids)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 16_000
    assert all(uuid.UUID(s).version == 7 for s in out)


def test_timestamp_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 4"):
        timestamp_ms(uuid.uuid4())
