"""UUID version 7 (RFC 9562 §5.7): event ids and batch ids that sort by creation time.

Python 3.11 has no `uuid.uuid7`. Layout: 48-bit Unix milliseconds, version 7, then 74
bits that are random for the first id of a millisecond and, for further ids in the same
millisecond, the previous value plus a random step (RFC 9562 §6.2 "Method 2: monotonic
random"). So ids made by one process strictly increase even when many taps share a
millisecond. A Pi has no RTC and NTP may step the clock backwards after boot: we then
keep counting on from the last timestamp used (§6.2 allows this) instead of going back.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_RANDOM_BITS = 74  # 12 bits rand_a + 62 bits rand_b
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
# A step of up to 2^32 leaves room for billions of ids per millisecond and still makes
# the next id unguessable from the previous one.
_STEP_BITS = 32


class _Generator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next(self, now_ms: int | None = None) -> uuid.UUID:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if ms > self._last_ms:
                random = secrets.randbits(_RANDOM_BITS)
            else:
                # Same millisecond, or the wall clock went backwards: stay on the last one.
                ms = self._last_ms
                random = self._last_random + 1 + secrets.randbits(_STEP_BITS)
                if random > _RANDOM_MAX:
                    # Counter exhausted within this millisecond: borrow the next one.
                    ms += 1
                    random = secrets.randbits(_RANDOM_BITS)
            self._last_ms, self._last_random = ms, random
        return _assemble(ms, random)


def _assemble(ms: int, random: int) -> uuid.UUID:
    rand_a = random >> 62
    rand_b = random & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


_generator = _Generator()


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new UUIDv7, greater than every one this process made before.

    `now_ms` (Unix milliseconds) is for tests; by default the wall clock is read.
    """
    return _generator.next(now_ms)


def uuid7_str() -> str:
    """`str(uuid7())`: the canonical 36-character form used on the wire."""
    return str(_generator.next())


def timestamp_ms(value: uuid.UUID | str) -> int:
    """The Unix milliseconds a UUIDv7 was made at (ValueError for other versions)."""
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    if u.version != 7:
        raise ValueError(f"{u} is a version {u.version} UUID, not version 7")
    return u.int >> 80
